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

import dataclasses
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


# ----------------------------------------------------------------------------- budgets
#: Sampling modes (``--sampling``): how many trajectories a task gets in one batch.
SAMPLING_MODES = ("fixed", "per_task", "total")


@dataclasses.dataclass(frozen=True)
class Budget:
    """A budget of environment steps, as rllab's samplers count it.

    ``per_task``: each task collects paths until its completed paths hold ``steps`` steps;
    ``lanes`` paths run at once per task and the paths still running then are completed
    (rllab ``parallel_sampler.sample_paths`` with ``n_parallel`` workers, which maml_rl's
    ``BatchSampler`` calls task after task). ``total``: one path at a time per task and one
    budget shared by all tasks; when the completed paths of all tasks reach ``steps`` the
    paths still running are dropped (maml_rl's ``VectorizedSampler``, used when
    ``n_parallel`` is 1). Either way a path that ends early (the point robot at its goal,
    a fallen ant) leaves budget for more paths.
    """

    steps: int
    lanes: int = 1
    scope: str = "per_task"

    def __post_init__(self):
        if self.scope not in ("per_task", "total"):
            raise ValueError(f"budget scope must be 'per_task' or 'total', got {self.scope!r}")
        if self.steps < 1 or self.lanes < 1:
            raise ValueError(f"budget needs steps >= 1 and lanes >= 1, got {self}")

    @property
    def complete_in_flight(self) -> bool:
        return self.scope == "per_task"


def released_sampling(env_name: str) -> tuple:
    """(mode, lanes) of the released training scripts: ``maml_trpo_point.py`` ran with
    ``n_parallel=1`` (VectorizedSampler: shared budget, one path per task at a time);
    ``cluster_maml_trpo_cheetah.py`` / ``_ant.py`` with ``n_parallel=8`` (per-task budget,
    8 paths at once, the last ones completed: about 24 paths where 20 were asked)."""
    from rl.envs.registry import get_spec
    return ("total", 1) if get_spec(env_name).name == "point" else ("per_task", 8)


def training_budget(mode: str, num_tasks: int, episodes_per_task: int, horizon: int,
                    lanes: int) -> Budget | None:
    """The budget of a training batch: maml_rl's ``batch_size = fast_batch_size x
    max_path_length x meta_batch_size`` steps, split evenly over the tasks for
    ``per_task``; None for ``fixed`` (exactly ``episodes_per_task`` paths per task)."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
    if mode == "fixed":
        return None
    if mode == "per_task":
        return Budget(episodes_per_task * horizon, lanes, "per_task")
    return Budget(num_tasks * episodes_per_task * horizon, 1, "total")


def make_sampler(env_name: str, num_tasks: int, episodes_per_task: int, horizon: int,
                 mode: str = "fixed", lanes: int = 1, oracle: bool = False,
                 num_workers: int = 0):
    """(sampler, vector_env) for ``mode``; the caller closes the vector env."""
    from rl.envs.registry import make_vector_env
    budget = training_budget(mode, num_tasks, episodes_per_task, horizon, lanes)
    envs_per_task = episodes_per_task if budget is None else budget.lanes
    vector_env = make_vector_env(env_name, num_tasks * envs_per_task, oracle, num_workers)
    if budget is None:
        return BatchSampler(vector_env, num_tasks, episodes_per_task, horizon), vector_env
    return BudgetSampler(vector_env, num_tasks, horizon, budget), vector_env


class BudgetSampler:
    """Samples K tasks under a :class:`Budget`; returns (K, N, T) Episodes, N = the largest
    number of paths a task got (tasks with fewer are padded with empty, fully masked paths).

    ``lanes`` environments per task run paths; when one finishes and its task (or, for the
    ``total`` scope, the whole batch) has budget left, the same environment is reset and
    starts the next path. One policy evaluation per time step covers all K x lanes
    environments, as in ``BatchSampler``. The original's workers were asynchronous; here
    they move in lockstep, so with paths of equal length the count is deterministic (20 paths
    of 200 steps asked, 8 lanes: 24).
    """

    def __init__(self, vector_env: VectorTaskEnv, num_tasks: int, horizon: int,
                 budget: Budget):
        if vector_env.num_envs != num_tasks * budget.lanes:
            raise ValueError(f"vector env has {vector_env.num_envs} environments, need "
                             f"{num_tasks} tasks x {budget.lanes} lanes")
        self.env, self.num_tasks, self.horizon, self.budget = (
            vector_env, num_tasks, horizon, budget)
        self.steps_taken = 0
        self.last_paths_per_task = None   # (K,) paths kept in the last batch

    def sample(self, tasks: Sequence, policy_fn: PolicyFn, seed: int) -> Episodes:
        k, w, horizon, budget = self.num_tasks, self.budget.lanes, self.horizon, self.budget
        if len(tasks) != k:
            raise ValueError(f"got {len(tasks)} tasks, sampler is set up for {k}")
        rng = np.random.default_rng(seed)
        self.env.set_tasks([task for task in tasks for _ in range(w)])
        obs = self.env.reset(seed=int(rng.integers(2 ** 31)))
        obs_dim, act_dim = self.env.observation_dim, self.env.action_dim
        lane_task = np.repeat(np.arange(k), w)
        path = np.tile(np.arange(w), k)           # which of its task's paths a lane runs
        started = np.full(k, w)
        t_in_path = np.zeros(k * w, dtype=int)
        active = np.ones(k * w, dtype=bool)
        done_steps = np.zeros(k, dtype=np.int64)  # steps in completed paths, per task
        capacity = w + -(-budget.steps // horizon) + 1
        store = _PathStore(k, capacity, horizon, obs_dim, act_dim)
        while active.any():
            mean, log_std = policy_fn(obs.reshape(k, w, obs_dim).astype(np.float32))
            noise = rng.standard_normal((k, w, act_dim))
            action = (np.asarray(mean) + np.exp(np.asarray(log_std)) * noise).reshape(k * w,
                                                                                     act_dim)
            lanes = np.flatnonzero(active)
            where = (lane_task[lanes], path[lanes], t_in_path[lanes])
            store.observations[where] = obs[lanes]
            store.actions[where] = action[lanes]
            store.mask[where] = 1.0
            obs, reward, done = self.env.step(action, active)
            obs = np.array(obs, dtype=np.float64)
            self.steps_taken += lanes.size
            store.rewards[where] = np.asarray(reward)[lanes]
            t_in_path[lanes] += 1
            finished = active & (np.asarray(done, dtype=bool) | (t_in_path >= horizon))
            ended = np.flatnonzero(finished)
            np.add.at(done_steps, lane_task[ended], t_in_path[ended])
            store.complete[lane_task[ended], path[ended]] = True
            active &= ~finished
            if budget.scope == "total":
                if done_steps.sum() >= budget.steps:   # running paths are dropped
                    active[:] = False
                    break
                restart = ended
            else:
                restart = ended[done_steps[lane_task[ended]] < budget.steps]
            if restart.size:
                for lane in restart:
                    task = lane_task[lane]
                    store.ensure(started[task] + 1)
                    path[lane], started[task] = started[task], started[task] + 1
                t_in_path[restart] = 0
                active[restart] = True
                seeds = rng.integers(2 ** 31, size=restart.size)
                obs[restart] = self.env.reset_envs(restart, seeds)
        episodes, self.last_paths_per_task = store.episodes()
        return episodes


class _PathStore:
    """Per-task path buffers that grow as paths start; ``episodes`` keeps complete paths."""

    def __init__(self, k, capacity, horizon, obs_dim, act_dim):
        self.observations = np.zeros((k, capacity, horizon, obs_dim), dtype=np.float32)
        self.actions = np.zeros((k, capacity, horizon, act_dim), dtype=np.float32)
        self.rewards = np.zeros((k, capacity, horizon))
        self.mask = np.zeros((k, capacity, horizon), dtype=np.float32)
        self.complete = np.zeros((k, capacity), dtype=bool)

    def ensure(self, paths: int) -> None:
        capacity = self.complete.shape[1]
        if paths <= capacity:
            return
        grow = max(paths, 2 * capacity) - capacity
        for name in ("observations", "actions", "rewards", "mask", "complete"):
            array = getattr(self, name)
            pad = [(0, 0), (0, grow)] + [(0, 0)] * (array.ndim - 2)
            setattr(self, name, np.pad(array, pad))

    def episodes(self):
        """Complete paths moved to the front of each task, padded to the largest count."""
        counts = self.complete.sum(axis=1)
        n = max(int(counts.max()), 1)
        k = self.complete.shape[0]
        out = [np.zeros((k, n) + a.shape[2:], dtype=a.dtype)
               for a in (self.observations, self.actions, self.rewards, self.mask)]
        for task in range(k):
            keep = np.flatnonzero(self.complete[task])
            for target, source in zip(out, (self.observations, self.actions, self.rewards,
                                            self.mask)):
                target[task, :keep.size] = source[task, keep]
        return Episodes(*out, compact=True), counts


# ----------------------------------------------------------------------------- worker pool
#: Seconds between checks that a worker is still alive while its answer is awaited.
WORKER_POLL_SECONDS = 0.5


class WorkerError(RuntimeError):
    """A worker process failed: it died, or a command raised (the worker's error quoted)."""


def _worker_main(connection, env_name: str, num_envs: int, oracle: bool) -> None:
    """Serves one slice of the environments: set_tasks / reset / reset_envs / step / close.

    Every answer is ("ok", value) or ("error", text): a command that raises, or one the
    worker does not know, is reported to the parent (which raises :class:`WorkerError`)
    instead of leaving it waiting for an answer that never comes.
    """
    from rl.envs.registry import make_env  # imported here: the child never needs TF
    env = SerialVectorEnv([make_env(env_name, oracle) for _ in range(num_envs)])
    connection.send(("ok", (env.observation_dim, env.action_dim)))
    handlers = {
        "set_tasks": lambda payload: env.set_tasks(payload),
        "reset": lambda payload: env.reset_with_seeds(payload),
        "reset_envs": lambda payload: env.reset_envs(*payload),
        "step": lambda payload: env.step(*payload),
    }
    while True:
        command, payload = connection.recv()
        if command == "close":
            env.close()
            connection.close()
            return
        if command not in handlers:
            connection.send(("error", f"unknown command {command!r}; the worker knows "
                                      f"{sorted(handlers) + ['close']}"))
            continue
        try:
            answer = ("ok", handlers[command](payload))
        except Exception as error:   # reported to the parent, which raises it
            answer = ("error", f"{command}: {type(error).__name__}: {error}")
        connection.send(answer)


class ProcessVectorEnv(VectorTaskEnv):
    """``num_envs`` environments split evenly over ``num_workers`` spawned processes.

    A worker that dies or fails makes the next call raise :class:`WorkerError` (within
    ``WORKER_POLL_SECONDS`` of its death) instead of hanging.

    Example::

        env = ProcessVectorEnv("cheetah_vel", num_envs=20, num_workers=2)
        env.set_tasks([0.5] * 20)
        obs = env.reset(seed=0)
        obs, rewards, dones = env.step(actions, np.ones(20, dtype=bool))
        env.close()
    """

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
        dims = [self._receive(index) for index in range(len(self.connections))]
        self.observation_dim, self.action_dim = dims[0]

    def _send(self, index: int, message) -> None:
        try:
            self.connections[index].send(message)
        except (BrokenPipeError, OSError) as error:
            raise self._dead(index, f"sending {message[0]!r} failed ({error})") from None

    def _receive(self, index: int):
        """Worker ``index``'s answer, waiting only while the worker lives."""
        connection, process = self.connections[index], self.processes[index]
        try:
            while not connection.poll(WORKER_POLL_SECONDS):
                if not process.is_alive():
                    raise self._dead(index, "it exited without answering")
            status, value = connection.recv()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            raise self._dead(index, "its connection closed") from None
        if status != "ok":
            raise WorkerError(f"environment worker {index} (pid {process.pid}): {value}")
        return value

    def _dead(self, index: int, what: str) -> WorkerError:
        process = self.processes[index]
        process.join(timeout=WORKER_POLL_SECONDS)
        return WorkerError(f"environment worker {index} (pid {process.pid}) died: {what}; "
                           f"exit code {process.exitcode}")

    def _broadcast(self, command, payloads):
        for index, payload in enumerate(payloads):
            self._send(index, (command, payload))
        return [self._receive(index) for index in range(len(self.connections))]

    def set_tasks(self, tasks):
        if len(tasks) != self.num_envs:
            raise ValueError(f"got {len(tasks)} tasks for {self.num_envs} environments")
        self._broadcast("set_tasks", [list(tasks[part]) for part in self.slices])

    def reset(self, seed):
        seeds = env_seeds(seed, self.num_envs)
        return np.concatenate(self._broadcast("reset", [seeds[part] for part in self.slices]))

    def reset_envs(self, indices, seeds):
        indices, seeds = np.asarray(indices, dtype=int), np.asarray(seeds)
        parts = []
        for index, part in enumerate(self.slices):
            chosen = (indices >= part.start) & (indices < part.stop)
            if chosen.any():
                self._send(index, ("reset_envs", (indices[chosen] - part.start, seeds[chosen])))
                parts.append((np.flatnonzero(chosen), index))
        obs = np.zeros((len(indices), self.observation_dim))
        for positions, index in parts:
            obs[positions] = self._receive(index)
        return obs

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
            if process.is_alive():   # stuck: do not leave it behind
                process.terminate()
                process.join(timeout=5)
        self.connections, self.processes = [], []
