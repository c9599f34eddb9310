"""Where the time of one meta-iteration goes: per-op profile and FLOP count (issue 10).

    flock /tmp/maml_heavy.lock .venv/bin/python scripts/profile_meta_step.py \
        --config=omniglot_5way_1shot --order=2 --steps=5 [--task_groups=4]
    .venv/bin/python scripts/profile_meta_step.py --config=miniimagenet_5way_1shot \
        --order=1 --flops_only

For one configuration of ``scripts/benchmark.py`` (same model, MetaLearner and synthetic
batch shapes) this

1. counts the floating-point operations of one meta-iteration with TensorFlow's registered
   ``flops`` statistics (what ``tf.compat.v1.profiler``'s float_operation view sums) over
   the traced graph of the meta-gradient function: forward, inner gradients and the
   second-order terms (Adam's few element-wise ops are not counted); prints them per op type;
2. times ``--steps`` full meta-training steps (``meta_train_step``: gradients and Adam) under
   ``tf.profiler`` after warm-up, reads the host trace (XPlane) back and prints the summed
   self time per op type as a share of the traced wall time, plus the median wall ms per
   step; the gap between the summed op time and the wall time is dispatch and idle time;
3. prints the fraction of the CPU's peak reached: counted FLOPs / median step time against
   the float32 rate of a large matrix product measured in the same process
   (``maml_tf.flops.measured_ceiling_gflops``; in a process of its own, with every core,
   when ``--task_groups`` > 1 runs each kernel on one thread as training does) and against
   ``--peak_gflops`` (default 156.8: 2 Zen 3 cores x 2.45 GHz x 32 float32 FLOPs per cycle,
   two 256-bit FMA pipes; the clock is the TSC/BogoMIPS rate, no turbo assumed).

Op times are the kernel events of TensorFlow's compute threads (oneDNN kernels appear as
``_MklNative*``/``_Mkl*``), summed over both pool threads, so their sum can exceed the wall time
when ops run concurrently; the share column divides by the summed kernel time.
"""
import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import maml_tf  # noqa: E402,F401  (oneDNN on, before TensorFlow loads)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from maml_tf.flops import (ceiling_in_own_process, measured_ceiling_gflops,  # noqa: E402
                           meta_iteration_flops)
from maml_tf.learner import MetaLearner  # noqa: E402
from maml_tf.maml import InnerLoopSpec  # noqa: E402
from maml_tf.runtime import machine_description, set_intra_op_threads  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # noqa: E402  (scripts/benchmark.py: the configurations and their batches)

# The conv configurations of scripts/benchmark.py, as it builds them (main.py's batch norm)
CONFIGS = {name: config for name, config in benchmark.CONFIGS.items() if name != "sinusoid"}


def build(config, first_order, conv_impl="auto", task_groups=1):
    factory, tasks, n, k, q, lr, steps = CONFIGS[config]
    tf.keras.utils.set_random_seed(0)
    model = factory(conv_impl, first_order)
    spec = InnerLoopSpec(lr, steps, classification=True, update_batch_size=k,
                         first_order=first_order)
    learner = MetaLearner(model, spec, clip_value=benchmark.clip_value(config),
                          task_groups=task_groups)
    return model, learner, benchmark.synthetic_batch(model, tasks, n, k, q,
                                                     np.random.default_rng(0))


# Events that contain other kernels (their time is counted in the kernels themselves).
CONTAINERS = ("Process", "StatefulPartitionedCall", "PartitionedCall", "If", "StatelessIf",
              "While", "StatelessWhile")


def trace_op_times(learner, batch, steps):
    """Median wall ms per step and {op type: summed self microseconds} from the host trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    logdir = tempfile.mkdtemp(prefix="maml_profile_")
    walls = []
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        start = time.perf_counter()
        float(learner.meta_train_step(batch)["post_loss"])
        walls.append(time.perf_counter() - start)
    tf.profiler.experimental.stop()
    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    per_type = collections.Counter()
    per_name = collections.Counter()
    kernel = re.compile(r"^_?[A-Z][A-Za-z0-9]*$")
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {i: m.name for i, m in plane.event_metadata.items()}
        for line in plane.lines:
            # The executor's pool threads record each kernel as "node name:OpType"; the
            # python thread's events are the call stack around them.
            if line.name == "python":
                continue
            for event in line.events:
                op_name, _, op_type = names.get(event.metadata_id, "").rpartition(":")
                if not kernel.match(op_type) or op_type in CONTAINERS:
                    continue
                per_type[op_type] += event.duration_ps / 1e6
                per_name[f"{op_type} {op_name[-70:]}"] += event.duration_ps / 1e6
    return 1000 * float(np.median(walls)), per_type, per_name, 1000 * float(sum(walls))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="omniglot_5way_1shot", choices=sorted(CONFIGS))
    parser.add_argument("--order", type=int, default=2, choices=(1, 2))
    parser.add_argument("--conv_impl", default="auto", choices=("auto", "grouped", "per_task"))
    parser.add_argument("--steps", type=int, default=5, help="traced steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--flops_only", action="store_true")
    parser.add_argument("--peak_gflops", type=float, default=156.8)
    parser.add_argument("--task_groups", type=int, default=1,
                        help="as main.py's --task_groups (> 1: each kernel on one thread, "
                             "as training runs them)")
    args = parser.parse_args()
    if args.task_groups < 1:
        parser.error(f"--task_groups must be >= 1, got {args.task_groups}")
    if args.task_groups > 1:
        set_intra_op_threads(1)  # before TensorFlow's first op, as main.py does with groups
    print(f"TensorFlow {tf.__version__}; {machine_description()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    model, learner, batch = build(args.config, args.order == 1, args.conv_impl,
                                  args.task_groups)
    total, flops_per_type = meta_iteration_flops(learner, batch)
    print(f"\n{args.config}, {'first' if args.order == 1 else 'second'} order, "
          f"conv path {model.conv_impl}, {args.task_groups} task group(s): "
          f"{total / 1e9:.3f} GFLOP per meta-iteration "
          "(TensorFlow's count)")
    for name, value in sorted(flops_per_type.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {name:<28}{value / 1e9:9.3f} GFLOP  {100 * value / max(total, 1):5.1f}%")
    if args.flops_only:
        return
    for _ in range(args.warmup + 1):
        float(learner.meta_train_step(batch)["post_loss"])
    median_ms, per_type, per_name, wall_ms = trace_op_times(learner, batch, args.steps)
    busy = sum(per_type.values()) / 1000
    print(f"\nmedian {median_ms:.1f} ms per step (traced, {args.steps} steps, "
          f"{wall_ms:.0f} ms wall); summed kernel time {busy:.0f} ms "
          f"= {busy / wall_ms:.2f} busy threads on average")
    achieved = total / 1e9 / (median_ms / 1000)
    # One thread per kernel with task groups: then the ceiling of every core comes from a
    # process of its own, as scripts/benchmark.py measures it.
    matmul = (ceiling_in_own_process() if args.task_groups > 1
              else measured_ceiling_gflops())["matmul"]
    print(f"achieved {achieved:.1f} GFLOP/s = {100 * achieved / args.peak_gflops:.1f}% of "
          f"{args.peak_gflops} GFLOP/s peak, {100 * achieved / matmul:.1f}% of the "
          f"{matmul:.1f} GFLOP/s a large matrix product reaches here")
    print(f"\n{'op type':<34}{'ms/step':>9}{'share':>8}")
    for name, us in per_type.most_common(args.top):
        print(f"{name:<34}{us / 1000 / args.steps:9.2f}{100 * us / 1000 / busy:7.1f}%")
    print("\ntop single ops (ms/step):")
    for name, us in per_name.most_common(args.top):
        print(f"  {us / 1000 / args.steps:8.2f}  {name}")


if __name__ == "__main__":
    main()
