"""Throughput of the RL stack: raw MuJoCo stepping, single task envs, batched sampling, and
seconds per meta-iteration. Prints medians (and writes JSON with --out).

    nice -n 10 .venv/bin/python scripts/bench_rl.py --repeats=3 --out=logs/rl/bench.json
    # ms per TRPO meta-step, one device against --distribute=mirrored on 2 logical CPUs
    .venv/bin/python scripts/bench_rl.py --trpo_steps=5 --distribute=none,mirrored

Sampling uses the real path (TensorFlow policy, one evaluation per time step for all envs).
MuJoCo stepping counts control steps (one simulator step each: the cheetah's 0.01 s, the
ant's 0.02 s RK4 step as rllab's model). Meta-iterations and TRPO steps run with the
settings the task's MAML preset trains with (``preset_train_config``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import maml_tf  # noqa: E402,F401  (oneDNN on, quiet logs: before TensorFlow loads)

import numpy as np  # noqa: E402


def raw_mujoco(env_name: str, steps: int) -> float:
    import mujoco
    from rl.envs.registry import make_env
    env = make_env(env_name)
    rng = np.random.default_rng(0)
    controls = rng.uniform(-1, 1, size=(steps, env.model.nu))
    start = time.perf_counter()
    for ctrl in controls:
        env.data.ctrl[:] = ctrl
        mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
    return steps / (time.perf_counter() - start)


def single_env(env_name: str, steps: int) -> float:
    from rl.envs.registry import make_env
    env = make_env(env_name)
    env.set_task(env.sample_tasks(1, np.random.RandomState(0))[0])
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps,) + env.action_space.shape)
    start = time.perf_counter()
    for action in actions:
        _, _, done, _, _ = env.step(action)
        if done:
            env.reset()
    return steps / (time.perf_counter() - start)


def sampling(env_name: str, tasks: int, episodes: int, workers: int, repeats: int) -> float:
    from rl.envs.registry import get_spec, make_env, make_vector_env
    from rl.maml_trpo import MAMLTRPO, TRPOConfig
    from rl.policies import GaussianMLPPolicy
    from rl.samplers import BatchSampler
    spec = get_spec(env_name)
    single = make_env(env_name)
    policy = GaussianMLPPolicy(single.observation_space.shape[0], single.action_space.shape[0],
                               seed=0)
    learner = MAMLTRPO(policy, TRPOConfig())
    env = make_vector_env(env_name, tasks * episodes, num_workers=workers)
    try:
        sampler = BatchSampler(env, tasks, episodes, spec.horizon)
        goals = single.sample_tasks(tasks, np.random.RandomState(0))
        rates = []
        for r in range(repeats + 1):   # the first run traces the policy function
            before = sampler.steps_taken
            start = time.perf_counter()
            sampler.sample(goals, learner.adapter.sampling_policy(None), seed=r)
            if r > 0:
                rates.append((sampler.steps_taken - before) / (time.perf_counter() - start))
    finally:
        env.close()
    return float(np.median(rates))


def preset_train_config(env_name: str, **overrides):
    """The ``TrainConfig`` that ``./run.sh rl_ENV`` (MAML) trains with, then ``overrides``
    (TrainConfig fields; ``logdir`` a fresh temporary folder unless given).

    Why through the preset and rl.main's flags instead of ``TrainConfig(...)``: a meta-step's
    time depends on its settings (the FD step, the product, the sampler, the step size), so a
    benchmark with other settings times another algorithm. Before session 17 this script used
    ``TRPOConfig``'s defaults (FD step 1e-8 where training passes 1.0; the FD product for the
    point robot, which trains with the exact one): the ant's line searches rejected every
    step after 15 backtracks, and the point robot timed a product it does not train with.
    """
    from absl import flags as absl_flags

    import rl.main
    from flags.experiments import preset_args
    flag_values = absl_flags.FLAGS
    flag_values.unparse_flags()
    flag_values([sys.argv[0], *preset_args(f"rl_{env_name}")])
    cfg = rl.main.train_config()
    overrides.setdefault("logdir", tempfile.mkdtemp(prefix="bench_rl_"))
    return dataclasses.replace(cfg, resume=False, **overrides)


def meta_iterations(env_name: str, tasks: int, episodes: int, workers: int, iters: int):
    from rl.trainer import Trainer
    cfg = preset_train_config(env_name, meta_batch_size=tasks, fast_batch_size=episodes,
                              n_itr=iters, num_workers=workers)
    trainer = Trainer(cfg)
    try:
        history = trainer.train()
    finally:
        trainer.close()
    later = history[1:] or history   # the first iteration includes tracing
    keys = ("time_iteration", "time_sampling", "time_meta_step", "env_steps_per_second")
    result = {key: float(np.median([h[key] for h in later])) for key in keys}
    result["backtracks"] = float(np.median([h["backtracks"] for h in later]))
    result["accepted"] = int(sum(bool(h["accepted"]) for h in history))
    return result


def trpo_steps(env_name: str, tasks: int, episodes: int, distribute: str, devices: int,
               steps: int) -> dict:
    """Milliseconds per TRPO meta-step (``MAMLTRPO.meta_step`` alone, no sampling) with the
    task's default settings: one real iteration is sampled (and its meta-step traces the
    functions), then the same step is repeated ``steps`` times from the same parameters, so
    every repetition does the same work. Runs in its own process (logical devices)."""
    from maml_tf.distribute import build_strategy
    build_strategy(distribute, devices)   # before TensorFlow's first operation
    from rl.trainer import Trainer
    cfg = preset_train_config(env_name, meta_batch_size=tasks, fast_batch_size=episodes,
                              n_itr=1, num_workers=0, distribute=distribute,
                              num_cpu_devices=devices)
    trainer = Trainer(cfg)
    try:
        learner, captured = trainer.learner, []
        step = learner.meta_step
        learner.meta_step = lambda *args: captured.append(args) or step(*args)
        theta = trainer.policy.get_flat()
        trainer.run_iteration(0)
        times, backtracks = [], []
        for _ in range(steps):
            trainer.policy.set_flat(theta)
            start = time.perf_counter()
            info = step(*captured[0])
            times.append(1000 * (time.perf_counter() - start))
            backtracks.append(info["backtracks"])
    finally:
        trainer.close()
    return {"ms_per_trpo_step": float(np.median(times)), "ms_all": times,
            "backtracks": backtracks, "hvp": cfg.trpo.hvp,
            "replicas": trainer.learner.num_replicas if distribute != "none" else 1}


def trpo_comparison(configs: str, modes: str, devices: int, steps: int) -> dict:
    """``trpo_steps`` for every configuration and mode, each in a fresh process."""
    import subprocess
    report = {}
    for item in configs.split(","):
        for mode in modes.split(","):
            command = [sys.executable, os.path.abspath(__file__), f"--trpo_child={item}",
                       f"--distribute={mode}", f"--trpo_steps={steps}",
                       f"--num_cpu_devices={devices if mode == 'mirrored' else 1}"]
            output = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(output.stdout.strip().splitlines()[-1])
            report[f"{item}/{mode}"] = result
            print(item, mode, round(result["ms_per_trpo_step"], 1), "ms per TRPO step",
                  result, flush=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20000, help="raw/single-env steps")
    parser.add_argument("--envs", default="point,cheetah_vel,ant_vel")
    parser.add_argument("--sample_tasks", type=int, default=10)
    parser.add_argument("--sample_episodes", type=int, default=10)
    parser.add_argument("--workers", default="0,2", help="worker counts to compare")
    parser.add_argument("--meta_iters", type=int, default=3,
                        help="meta-iterations per configuration (0 skips)")
    parser.add_argument("--meta_configs", default="point:20:20,cheetah_vel:40:20",
                        help="env:meta_batch_size:fast_batch_size,...")
    parser.add_argument("--meta_workers", type=int, default=0,
                        help="worker processes for the MuJoCo meta-iterations (point: always 0)")
    parser.add_argument("--trpo_steps", type=int, default=0,
                        help="> 0: only time the TRPO meta-step (no sampling) this many times "
                             "per --meta_configs entry and --distribute mode")
    parser.add_argument("--distribute", default="none,mirrored",
                        help="--trpo_steps: modes to compare (rl.main's --distribute)")
    parser.add_argument("--num_cpu_devices", type=int, default=2,
                        help="--trpo_steps: logical CPU devices for mirrored")
    parser.add_argument("--trpo_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.trpo_child:
        env_name, tasks, episodes = args.trpo_child.split(":")
        print(json.dumps(trpo_steps(env_name, int(tasks), int(episodes), args.distribute,
                                    args.num_cpu_devices, args.trpo_steps)))
        return 0
    if args.trpo_steps > 0:
        report = trpo_comparison(args.meta_configs, args.distribute, args.num_cpu_devices,
                                 args.trpo_steps)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as handle:
                json.dump(report, handle, indent=1)
        return 0
    from rl.envs.mujoco_base import route_mujoco_warnings
    route_mujoco_warnings()
    report = {"throughput": {}, "meta_iteration": {}}
    for env_name in args.envs.split(","):
        row = {}
        if env_name != "point":
            row["raw_mujoco"] = float(np.median(
                [raw_mujoco(env_name, args.steps) for _ in range(args.repeats)]))
        row["single_env"] = float(np.median(
            [single_env(env_name, args.steps) for _ in range(args.repeats)]))
        for workers in [int(w) for w in args.workers.split(",")]:
            if env_name == "point" and workers > 0:
                continue
            row[f"sampling_{workers}w"] = sampling(env_name, args.sample_tasks,
                                                   args.sample_episodes, workers, args.repeats)
        report["throughput"][env_name] = row
        print(env_name, {k: round(v) for k, v in row.items()}, flush=True)
    if args.meta_iters > 0:
        for item in args.meta_configs.split(","):
            env_name, tasks, episodes = item.split(":")
            workers = 0 if env_name == "point" else args.meta_workers
            result = meta_iterations(env_name, int(tasks), int(episodes), workers,
                                     args.meta_iters)
            report["meta_iteration"][item] = result
            print(item, {k: round(v, 2) for k, v in result.items()}, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
