"""The test protocol of section 5.3 (maml_rl's test scripts).

40 test tasks drawn with numpy seed 1; from the saved (or random) initial policy, 3 vanilla
policy-gradient steps per task, step size fast_lr for the first and fast_lr / 2 after, each
step on fresh rollouts (the released point test: 40 trajectories of length 100); the
released scripts' per-task and per-baseline exceptions are flag defaults (flags/rl.py).
Reported: the average return per task before and after every step. All tasks are adapted at
once (parameters with a task dimension), reusing the training code's inner step.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import pickle

import numpy as np
import tensorflow as tf
from absl import logging

from rl.config import EvalConfig
from rl.envs.registry import RELEASED_BACKWARD_FRACTION, get_spec, make_env, sample_tasks
from rl.adaptation import PolicyAdapter, to_sample_batch
from rl.episodes import compute_advantages
from rl.policies import GaussianMLPPolicy
from rl.samplers import make_sampler


def step_sizes(fast_lr: float, num_steps: int, decay: float = 0.5) -> list:
    """fast_lr for the first step, fast_lr * decay afterwards: the released test scripts'
    ``init_learning_rate`` / ``learning_rate`` pair (decay 0.5; 0.01 for the ant direction)."""
    return [fast_lr if i == 0 else fast_lr * decay for i in range(num_steps)]


def protocol_tasks(env_name: str, num_tasks: int, goal_seed: int, oracle: bool = False,
                   backward_fraction: float = RELEASED_BACKWARD_FRACTION) -> list:
    """``np.random.seed(goal_seed)`` then ``sample_goals``: the original's test goals (for
    forward/backward tasks, ``backward_fraction`` of the draws' range means backward)."""
    return sample_tasks(make_env(env_name, oracle), num_tasks,
                        np.random.RandomState(goal_seed), backward_fraction)


def per_goal_initialisations(make_policy, num_tasks: int) -> dict:
    """Parameters (num_tasks, ...) whose row i is the fresh initialisation of seed i:
    ``make_policy(seed)`` builds the policy. The released direction test scripts built the
    random policy inside the loop over goals under ``seed=goal_i``."""
    rows = [make_policy(i).meta_parameters() for i in range(num_tasks)]
    return {name: tf.stack([row[name] for row in rows]) for name in rows[0]}


def policy_std(policy: GaussianMLPPolicy, params: dict | None, num_tasks: int) -> np.ndarray:
    """Mean action standard deviation per task, (num_tasks,), of ``params`` (task-batched)
    or, for None, of the policy's own parameters."""
    params = policy.meta_parameters() if params is None else params
    log_std = params["log_std"].numpy()
    std = np.exp(log_std).mean(axis=-1)
    return np.broadcast_to(std, (num_tasks,)).copy()


def step_length(policy: GaussianMLPPolicy, before: dict | None, after: dict) -> np.ndarray:
    """Per-task Euclidean distance between two parameter sets, (num_tasks,); ``before``
    None means the policy's own (shared) parameters."""
    before = policy.meta_parameters() if before is None else before
    total = 0.0
    for name, value in after.items():
        diff = value.numpy() - np.asarray(before[name])   # broadcasts a shared start
        total = total + np.sum(np.square(diff).reshape(diff.shape[0], -1), axis=1)
    return np.sqrt(total)


def evaluate(policy: GaussianMLPPolicy, cfg: EvalConfig, discount: float = 0.99,
             gae_lambda: float = 1.0, initial: dict | None = None) -> dict:
    """Runs the protocol; returns a dict with ``returns`` of shape (num_steps + 1, tasks).
    ``initial``: per-goal starting parameters (num_tasks, ...) instead of ``policy``'s own
    (whose architecture they must have)."""
    tasks = protocol_tasks(cfg.env_name, cfg.num_tasks, cfg.goal_seed, cfg.oracle,
                           cfg.backward_fraction)
    sampler, env = make_sampler(cfg.env_name, cfg.num_tasks, cfg.episodes_per_task,
                                cfg.max_path_length, cfg.sampling, cfg.sampling_lanes,
                                cfg.oracle, cfg.num_workers)
    try:
        adapter = PolicyAdapter(policy, cfg.fast_lr)
        theta = policy.get_flat()
        lrs = step_sizes(cfg.fast_lr, cfg.num_steps, cfg.lr_decay)
        batches, returns, trajectories, params, paths = [], [], [], initial, []
        stds, moves = [], []
        for step in range(cfg.num_steps + 1):
            stds.append(policy_std(policy, params, cfg.num_tasks))
            episodes = sampler.sample(tasks, adapter.sampling_policy(params),
                                      seed=cfg.seed * 1000 + step)
            returns.append(episodes.average_return_per_task())
            paths.append(episodes.episode_exists().sum(axis=1))
            keep = cfg.num_trajectories_kept
            trajectories.append({"observations": episodes.observations[:, :keep],
                                 "mask": episodes.mask[:, :keep]})
            logging.info("test step %d: average return %.2f (%.1f paths per goal, policy std "
                         "%.3f)", step, returns[-1].mean(), paths[-1].mean(), stds[-1].mean())
            if step == cfg.num_steps:
                break
            batches.append(to_sample_batch(compute_advantages(episodes, discount, gae_lambda),
                                           adapter.dtype))
            before = params
            if initial is None:
                params = adapter.adapted_params(theta, batches, lrs[:len(batches)])
            else:
                params = adapter.adapted_from(initial, batches, lrs[:len(batches)])
            moves.append(step_length(policy, before, params))
    finally:
        env.close()
    returns = np.stack(returns)
    result = {
        "env_name": get_spec(cfg.env_name).name, "method": cfg.method,
        "paper_key": get_spec(cfg.env_name).paper_key,
        "returns": returns, "mean_per_step": returns.mean(axis=1),
        "std_per_step": returns.std(axis=1), "tasks": np.asarray(tasks),
        "step_sizes": lrs, "config": dataclasses.asdict(cfg),
        "paths_per_task": np.stack(paths),
        # (num_steps + 1, tasks): the mean action standard deviation of the policy that
        # sampled each step; (num_steps, tasks): the Euclidean length of each inner step in
        # parameter space. A VPG step grows like 1 / std, so a policy that meta-training made
        # precise takes longer later steps with the same step size (docs/RESULTS.md, point).
        "policy_std_per_step": np.stack(stds),
        "step_length_per_step": np.stack(moves) if moves else np.zeros((0, len(tasks))),
    }
    if not get_spec(cfg.env_name).mujoco:   # the point robot's paths for Figure 4-like plots
        result["trajectories"] = trajectories
    return result


def save_results(result: dict, path: str) -> tuple:
    """Writes ``path`` (pickle) and a CSV beside it (one row per task and step)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(result, handle)
    csv_path = os.path.splitext(path)[0] + ".csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env", "method", "grad_steps", "task_index", "task", "average_return"])
        for step, row in enumerate(result["returns"]):
            for k, value in enumerate(row):
                task = np.atleast_1d(result["tasks"][k])
                writer.writerow([result["env_name"], result["method"], step, k,
                                 " ".join(f"{x:.6g}" for x in task), f"{value:.6f}"])
    return path, csv_path
