"""Batched trajectory sampling for a whole meta-batch, and the MuJoCo worker pool.

``BatchSampler`` runs meta_batch_size x episodes_per_task trajectories at once: at every time
step it makes ONE policy evaluation for all environments (``policy_fn`` receives observations
shaped (K, N, obs_dim) and returns per-task Gaussian parameters) and one ``step`` of a
``VectorTaskEnv``. It is deliberately free of TensorFlow: the caller supplies ``policy_fn``, so
the same class can be served by other processes or hosts. ``ProcessVectorEnv`` splits the
MuJoCo environments over worker processes (spawned, so they never import TensorFlow): a probe
on this 2-core machine measured a 2-process pool of 10 half-cheetahs each at 23k steps/s,
against 13k for one env and 6.6k for Gymnasium's AsyncVectorEnv with one process per env.
"""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Sequence

import numpy as np

from rl.envs.base import SerialVectorEnv, VectorTaskEnv, env_seeds
from rl.episodes import Episodes

PolicyFn = Callable[[np.ndarray], tuple]


class BatchSampler:
    """Samples ``episodes_per_task`` paths of up to ``horizon`` steps for each of K tasks."""

    def __init__(self, vector_env: VectorTaskEnv, num_tasks: int, episodes_per_task: int,
                 horizon: int):
        if vector_env.num_envs != num_tasks * episodes_per_task:
            raise ValueError(f"vector env has {vector_env.num_envs} environments, need "
                             f"{num_tasks} tasks x {episodes_per_task} episodes")
        self.env = vector_env
        self.num_tasks = num_tasks
        self.episodes_per_task = episodes_per_task
        self.horizon = horizon
        self.steps_taken = 0  # environment steps, for throughput reporting

    def sample(self, tasks: Sequence, policy_fn: PolicyFn, seed: int) -> Episodes:
        """Rolls out ``policy_fn`` (mean, log_std = policy_fn(obs)) on ``tasks``.

        Actions are mean + std * standard normal noise drawn from ``seed``; once an environment
        reports done it is frozen and its later steps are masked out.
        """
        k, n, horizon = self.num_tasks, self.episodes_per_task, self.horizon
        if len(tasks) != k:
            raise ValueError(f"got {len(tasks)} tasks, sampler is set up for {k}")
        rng = np.random.default_rng(seed)
        self.env.set_tasks([task for task in tasks for _ in range(n)])
        obs = self.env.reset(seed=int(rng.integers(2 ** 31)))
        obs_dim, act_dim = self.env.observation_dim, self.env.action_dim
        observations = np.zeros((k, n, horizon, obs_dim), dtype=np.float32)
        actions = np.zeros((k, n, horizon, act_dim), dtype=np.float32)
        rewards = np.zeros((k, n, horizon))
        mask = np.zeros((k, n, horizon), dtype=np.float32)
        active = np.ones(k * n, dtype=bool)
        for t in range(horizon):
            obs_batch = obs.reshape(k, n, obs_dim).astype(np.float32)
            mean, log_std = policy_fn(obs_batch)
            noise = rng.standard_normal((k, n, act_dim))
            action = np.asarray(mean) + np.exp(np.asarray(log_std)) * noise
            observations[:, :, t] = obs_batch
            actions[:, :, t] = action
            mask[:, :, t] = active.reshape(k, n)
            obs, reward, done = self.env.step(action.reshape(k * n, act_dim), active)
            self.steps_taken += int(active.sum())
            rewards[:, :, t] = np.where(active, reward, 0.0).reshape(k, n)
            active = active & ~np.asarray(done, dtype=bool)
            if not active.any():
                break
        return Episodes(observations, actions, rewards, mask)


# ----------------------------------------------------------------------------- worker pool
def _worker_main(connection, env_name: str, num_envs: int, oracle: bool) -> None:
    """Serves one slice of the environments: set_tasks / reset / step / close commands."""
    from rl.envs.registry import make_env  # imported here: the child never needs TF
    env = SerialVectorEnv([make_env(env_name, oracle) for _ in range(num_envs)])
    connection.send(("ready", (env.observation_dim, env.action_dim)))
    while True:
        command, payload = connection.recv()
        if command == "set_tasks":
            env.set_tasks(payload)
            connection.send(None)
        elif command == "reset":
            connection.send(env.reset_with_seeds(payload))
        elif command == "step":
            connection.send(env.step(*payload))
        elif command == "close":
            env.close()
            connection.close()
            return


class ProcessVectorEnv(VectorTaskEnv):
    """``num_envs`` environments split evenly over ``num_workers`` spawned processes."""

    def __init__(self, env_name: str, num_envs: int, oracle: bool = False,
                 num_workers: int = 2):
        num_workers = max(1, min(num_workers, num_envs))
        self.num_envs = num_envs
        context = mp.get_context("spawn")
        bounds = np.linspace(0, num_envs, num_workers + 1).astype(int)
        self.slices = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.connections, self.processes = [], []
        for part in self.slices:
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker_main, args=(child, env_name, part.stop - part.start, oracle),
                daemon=True)
            process.start()
            child.close()
            self.connections.append(parent)
            self.processes.append(process)
        dims = [connection.recv()[1] for connection in self.connections]
        self.observation_dim, self.action_dim = dims[0]

    def _broadcast(self, command, payloads):
        for connection, payload in zip(self.connections, payloads):
            connection.send((command, payload))
        return [connection.recv() for connection in self.connections]

    def set_tasks(self, tasks):
        if len(tasks) != self.num_envs:
            raise ValueError(f"got {len(tasks)} tasks for {self.num_envs} environments")
        self._broadcast("set_tasks", [list(tasks[part]) for part in self.slices])

    def reset(self, seed):
        seeds = env_seeds(seed, self.num_envs)
        return np.concatenate(self._broadcast("reset", [seeds[part] for part in self.slices]))

    def step(self, actions, active):
        results = self._broadcast(
            "step", [(actions[part], active[part]) for part in self.slices])
        obs, rewards, dones = zip(*results)
        return np.concatenate(obs), np.concatenate(rewards), np.concatenate(dones)

    def close(self):
        for connection, process in zip(self.connections, self.processes):
            try:
                connection.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=5)
        self.connections, self.processes = [], []
