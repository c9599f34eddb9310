"""Throughput of the RL stack: raw MuJoCo stepping, single task envs, batched sampling, and
seconds per meta-iteration. Prints medians (and writes JSON with --out).

    nice -n 10 .venv/bin/python scripts/bench_rl.py --repeats=3 --out=logs/rl/bench.json

Sampling uses the real path (TensorFlow policy, one evaluation per time step for all envs).
MuJoCo stepping counts control steps (the cheetah: 1 simulator step, the ant: 2).
"""
from __future__ import annotations

import argparse
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


def meta_iterations(env_name: str, tasks: int, episodes: int, workers: int, iters: int):
    from rl.config import TrainConfig
    from rl.envs.registry import get_spec
    from rl.maml_trpo import TRPOConfig
    from flags.experiments import task_defaults
    from rl.trainer import Trainer
    fast_lr = task_defaults(env_name)["fast_lr"]   # the presets' per-task default
    cfg = TrainConfig(env_name=env_name, meta_batch_size=tasks, fast_batch_size=episodes,
                      max_path_length=get_spec(env_name).horizon, n_itr=iters,
                      logdir=tempfile.mkdtemp(prefix="bench_rl_"), num_workers=workers,
                      trpo=TRPOConfig(fast_lr=fast_lr))
    trainer = Trainer(cfg)
    try:
        history = trainer.train()
    finally:
        trainer.close()
    later = history[1:] or history   # the first iteration includes tracing
    keys = ("time_iteration", "time_sampling", "time_meta_step", "env_steps_per_second")
    return {key: float(np.median([h[key] for h in later])) for key in keys}


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
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
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
