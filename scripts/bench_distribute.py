"""The overhead of tf.distribute itself: ms per meta-iteration on one device, on 2 mirrored
logical CPU devices, and on 2 worker processes on 127.0.0.1 (issue 14).

Each configuration is a real ``main.py`` training run; the time per iteration is the median
of the progress lines' ``ms/it`` after the first print window (which holds the tracing and
compilation). On a CPU host the replicas share the same cores, so this measures what the
strategy costs, not what more hardware gains.

    flock /tmp/maml_heavy.lock .venv/bin/python scripts/bench_distribute.py [--only sinusoid]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WORKLOADS = {
    "sinusoid": ["--datasource=sinusoid", "--norm=None", "--update_batch_size=10",
                 "--update_lr=0.01", "--meta_batch_size=24", "--metatrain_iterations=4001"],
    "omniglot_5way_1shot": ["--experiment=omniglot_5way_1shot", "--metatrain_iterations=401"],
}
CONFIGS = ("none", "mirrored", "multi_worker")
RATE = re.compile(r"\[(\d+)/\d+ it, ([0-9.]+) ms/it")


def _env(tf_config=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    return env


def run(workload: str, config: str) -> float:
    """Median ms per meta-iteration of one configuration (windows after the first)."""
    with tempfile.TemporaryDirectory(prefix="bench_distribute_") as folder:
        args = [sys.executable, "main.py", *WORKLOADS[workload], "--log=False",
                f"--logdir={folder}/run", "--checkpoint_interval=100000"]
        if config == "mirrored":
            args += ["--distribute=mirrored", "--num_cpu_devices=2"]
        if config != "multi_worker":
            done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True)
            outputs = [done]
        else:
            from maml_tf.cluster import localhost_tf_configs
            processes = [subprocess.Popen(
                [*args[:-2], f"--logdir={folder}/run{i}", *args[-1:],
                 "--distribute=multi_worker"], cwd=ROOT,
                env=_env(config),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i, config in enumerate(localhost_tf_configs(2))]
            outputs = [subprocess.CompletedProcess(p.args, 0, *p.communicate())
                       for p in processes]
            for done, process in zip(outputs, processes):
                done.returncode = process.returncode
        for done in outputs:
            if done.returncode:
                raise SystemExit(f"{workload} {config} failed:\n{done.stderr[-2000:]}")
        rates = [float(ms) for _, ms in RATE.findall(outputs[0].stdout)][1:]
        if not rates:
            raise SystemExit(f"{workload} {config}: no progress lines\n{outputs[0].stdout}")
        return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    options = parser.parse_args()
    import maml_tf  # noqa: F401
    from maml_tf.runtime import machine_description
    print(machine_description())
    print("| workload | " + " | ".join(CONFIGS) + " |")
    print("|---|" + "---:|" * len(CONFIGS))
    for workload in ([options.only] if options.only else WORKLOADS):
        times = [run(workload, config) for config in CONFIGS]
        print(f"| {workload} | " + " | ".join(f"{t:.2f}" for t in times) + " |", flush=True)


if __name__ == "__main__":
    main()
