"""Batched trajectory sampling for a whole meta-batch, with or without a step budget.

``BatchSampler`` runs meta_batch_size x episodes_per_task trajectories at once: at every time
step it makes ONE policy evaluation for all environments (``policy_fn`` receives observations
shaped (K, N, obs_dim) and returns per-task Gaussian parameters) and one ``step`` of a
``VectorTaskEnv``. It is deliberately free of TensorFlow: the caller supplies ``policy_fn``, so
the same class can be served by other processes or hosts (``rl.envs.workers.ProcessVectorEnv``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from rl.envs.base import VectorTaskEnv
from rl.episodes import Episodes

PolicyFn = Callable[[np.ndarray], tuple]


class BatchSampler:
    """Samples ``episodes_per_task`` paths of up to ``horizon`` steps for each of K tasks.

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import VectorPointEnv
        >>> from rl.samplers import BatchSampler
        >>> meta_batch_size, fast_batch_size, max_path_length = 2, 3, 5
        >>> sampler = BatchSampler(VectorPointEnv(meta_batch_size * fast_batch_size),
        ...                        meta_batch_size, fast_batch_size, max_path_length)
        >>> def policy_fn(obs):                    # (K, N, obs_dim) -> mean, log_std
        ...     return np.zeros(obs.shape[:-1] + (2,)), np.zeros(obs.shape[:-1] + (2,))
        >>> episodes = sampler.sample([[0.3, 0.2], [-0.4, 0.1]], policy_fn, seed=0)
        >>> episodes.observations.shape, episodes.mask.shape, sampler.steps_taken
        ((2, 3, 5, 2), (2, 3, 5), 30)
    """

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
    a fallen ant) leaves budget for more paths. ``lanes`` belongs to ``per_task``: the
    ``total`` scope's batch does not depend on how many environments simulate it
    (:class:`BudgetSampler`).

    Example:
        >>> from rl.samplers import Budget, training_budget
        >>> budget = Budget(steps=20 * 200, lanes=8)  # fast_batch_size x max_path_length
        >>> budget.scope, budget.complete_in_flight
        ('per_task', True)
        >>> training_budget("total", num_tasks=20, episodes_per_task=20, horizon=100, lanes=1)
        Budget(steps=40000, lanes=1, scope='total')
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
    8 paths at once, the last ones completed: about 24 paths where 20 were asked). The
    runs behind the paper predate that parallel sampler (maml_rl d8435d4, 2017-07-19):
    they all sampled as ``total``."""
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
    # total: the first round of paths, one per lane (all of them if every path is full length)
    envs_per_task = budget.lanes if budget and budget.scope == "per_task" else episodes_per_task
    vector_env = make_vector_env(env_name, num_tasks * envs_per_task, oracle, num_workers)
    if budget is None:
        return BatchSampler(vector_env, num_tasks, episodes_per_task, horizon), vector_env
    return BudgetSampler(vector_env, num_tasks, horizon, budget), vector_env


class BudgetSampler:
    """Samples K tasks under a :class:`Budget`; returns (K, N, T) Episodes, N = the largest
    number of paths a task got (tasks with fewer are padded with empty, fully masked paths).
    A task's kept paths come first, in the order they were started.

    ``per_task``: ``lanes`` environments per task run paths; when one finishes and its task
    has budget left, the same environment is reset and starts the next path. One policy
    evaluation per time step covers all K x lanes environments, as in ``BatchSampler``. The
    original's workers were asynchronous; here they move in lockstep, so with paths of equal
    length the count is deterministic (20 paths of 200 steps asked, 8 lanes: 24).

    ``total``: the original steps one environment per task, all tasks in lockstep rounds,
    about 2,000 rounds (each a policy evaluation) for the point robot. Which paths it keeps
    depends only on their lengths: a task's paths are i.i.d. (each starts from a reset), its
    j-th path ends in round C_kj = L_k1 + ... + L_kj (the next one's first step is in the
    next round), the batch stops at the first round R where the paths with C_kj <= R hold
    ``steps`` steps, and those are kept (:func:`shared_budget_cut`). So this sampler rolls
    out a task's paths side by side on all its environments (numbered in the order they
    start), computes C and R from the lengths, and rolls out more only for the tasks whose
    simulated paths end before R; R is then final, since any further path of task k ends
    after the sum of its simulated lengths. The batches have the same distribution as the
    lockstep's, with 200-400 policy evaluations instead of ~2,000 (point robot, 20 tasks x
    20 paths x 100 steps). ``steps_taken`` counts every simulated step, also those of paths
    after R (work done, for throughput; the original's dropped paths were steps done too).

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import VectorPointEnv
        >>> from rl.samplers import Budget, BudgetSampler
        >>> budget = Budget(steps=10, lanes=2)     # per task: paths until 10 steps are done
        >>> sampler = BudgetSampler(VectorPointEnv(2 * 2), num_tasks=2, horizon=4,
        ...                         budget=budget)
        >>> def policy_fn(obs):
        ...     return np.zeros(obs.shape[:-1] + (2,)), np.zeros(obs.shape[:-1] + (2,))
        >>> episodes = sampler.sample([[0.3, 0.2], [-0.4, 0.1]], policy_fn, seed=0)
        >>> sampler.last_paths_per_task, episodes.mask.shape   # 2 x 4 steps < 10: 2 more
        (array([4, 4]), (2, 4, 4))
    """

    def __init__(self, vector_env: VectorTaskEnv, num_tasks: int, horizon: int,
                 budget: Budget):
        lanes = budget.lanes if budget.scope == "per_task" else vector_env.num_envs // num_tasks
        if lanes < 1 or vector_env.num_envs != num_tasks * lanes:
            need = (f"{num_tasks} tasks x {budget.lanes} lanes" if budget.scope == "per_task"
                    else f"a multiple of {num_tasks} tasks")
            raise ValueError(f"vector env has {vector_env.num_envs} environments, need {need}")
        self.env, self.num_tasks, self.horizon, self.budget = (
            vector_env, num_tasks, horizon, budget)
        self.lanes = lanes                 # environments per task
        self.steps_taken = 0
        self.last_paths_per_task = None   # (K,) paths kept in the last batch

    def sample(self, tasks: Sequence, policy_fn: PolicyFn, seed: int) -> Episodes:
        k, w, horizon = self.num_tasks, self.lanes, self.horizon
        if len(tasks) != k:
            raise ValueError(f"got {len(tasks)} tasks, sampler is set up for {k}")
        rng = np.random.default_rng(seed)
        self.env.set_tasks([task for task in tasks for _ in range(w)])
        obs = self.env.reset(seed=int(rng.integers(2 ** 31)))
        # a task's expected share of the steps (the total scope shares one budget among the
        # K tasks); the store grows past it when a task's paths end early
        share = self.budget.steps if self.budget.scope == "per_task" else -(-self.budget.steps // k)
        capacity = w + -(-share // horizon) + 1
        store = _PathStore(k, capacity, horizon, self.env.observation_dim, self.env.action_dim)
        if self.budget.scope == "total":
            kept = self._sample_total(obs, store, policy_fn, rng)
            store.complete = np.arange(store.complete.shape[1]) < kept[:, None]
        else:
            self._sample_per_task(obs, store, policy_fn, rng)
        episodes, self.last_paths_per_task = store.episodes()
        return episodes

    def _sample_per_task(self, obs, store, policy_fn, rng) -> None:
        lane_task = np.repeat(np.arange(self.num_tasks), self.lanes)
        path = np.array([store.start(task) for task in lane_task])
        done_steps = np.zeros(self.num_tasks, dtype=np.int64)  # in completed paths, per task

        def admit(ended, lengths):
            np.add.at(done_steps, lane_task[ended], lengths)
            return ended[done_steps[lane_task[ended]] < self.budget.steps]

        self._roll(obs, store, path, np.ones(lane_task.size, dtype=bool), admit, policy_fn, rng)

    def _sample_total(self, obs, store, policy_fn, rng) -> np.ndarray:
        """Rounds of paths until the stop round R is known; returns the kept count per task."""
        k, horizon, steps = self.num_tasks, self.horizon, self.budget.steps
        quota = np.full(k, -(-steps // (k * horizon)))   # enough if all run to the horizon
        # R's upper bound: at round r each task's kept paths hold more than r - horizon steps
        ceiling = -(-steps // k) + horizon - 1
        while True:
            obs = self._total_round(obs, store, quota, policy_fn, rng)
            lengths = store.lengths()
            stop, kept = shared_budget_cut(lengths, steps)
            simulated = lengths.sum(axis=1)
            if stop <= simulated.min():
                return kept
            quota = _more_paths(lengths, min(stop, ceiling) - simulated)
            if not quota.any():   # R <= ceiling: unreachable unless a path outran the horizon
                raise RuntimeError(f"total budget: stop round {stop} after {simulated} steps")

    def _total_round(self, obs, store, quota, policy_fn, rng):
        """Rolls out ``quota[k]`` more paths of each task k on its lanes, a lane starting the
        task's next path when its own ends; all run to their end."""
        lane_task = np.repeat(np.arange(self.num_tasks), self.lanes)
        rank = np.tile(np.arange(self.lanes), self.num_tasks)
        fresh = store.started.sum() == 0          # obs are those of the initial reset
        first = np.flatnonzero(rank < quota[lane_task])
        path = np.zeros(lane_task.size, dtype=int)
        path[first] = [store.start(task) for task in lane_task[first]]
        remaining = quota - np.minimum(quota, self.lanes)
        if not fresh:
            obs[first] = self.env.reset_envs(first, rng.integers(2 ** 31, size=first.size))
        active = np.zeros(lane_task.size, dtype=bool)
        active[first] = True

        def admit(ended, lengths):
            del lengths
            chosen = []
            for lane in ended:
                if remaining[lane_task[lane]] > 0:
                    remaining[lane_task[lane]] -= 1
                    chosen.append(lane)
            return np.array(chosen, dtype=int)

        return self._roll(obs, store, path, active, admit, policy_fn, rng)

    def _roll(self, obs, store, path, active, admit, policy_fn, rng):
        """Steps the active lanes until none is left. ``path[lane]`` is the index of the path
        the lane runs; a lane whose path ends is reset for its task's next path when
        ``admit(ended_lanes, their_lengths)`` returns it. Returns the last observations."""
        k, w, horizon = self.num_tasks, self.lanes, self.horizon
        obs_dim, act_dim = self.env.observation_dim, self.env.action_dim
        lane_task = np.repeat(np.arange(k), w)
        t_in_path = np.zeros(k * w, dtype=int)
        obs = np.array(obs, dtype=np.float64)
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
            store.complete[lane_task[ended], path[ended]] = True
            active &= ~finished
            restart = admit(ended, t_in_path[ended])
            if restart.size:
                for lane in restart:
                    path[lane] = store.start(lane_task[lane])
                t_in_path[restart] = 0
                active[restart] = True
                seeds = rng.integers(2 ** 31, size=restart.size)
                obs[restart] = self.env.reset_envs(restart, seeds)
        return obs


def shared_budget_cut(lengths: np.ndarray, steps: int):
    """(R, kept) of a shared budget in lockstep rounds, from the path lengths alone.

    ``lengths`` (K, M): each task's path lengths in order, 0 past its last path. Path j of
    task k ends in round C_kj = L_k1 + ... + L_kj; R is the first round after which the
    paths ended so far hold >= ``steps`` steps (inf if they never do), ``kept[k]`` the
    number of task k's paths with C_kj <= R.
    """
    ends = np.cumsum(lengths, axis=1)
    exists = lengths > 0
    order = np.argsort(ends[exists], kind="stable")
    reached = np.cumsum(lengths[exists][order]) >= steps
    stop = ends[exists][order][np.argmax(reached)] if reached.any() else math.inf
    return stop, ((ends <= stop) & exists).sum(axis=1)


def _more_paths(lengths: np.ndarray, deficit: np.ndarray) -> np.ndarray:
    """How many more paths each task should roll out to add ``deficit`` steps: the mean
    number plus two standard deviations of their sum, estimated from the task's own paths.
    Only the cost depends on it (a short round is followed by another one)."""
    exists = lengths > 0
    count = exists.sum(axis=1)
    mean = lengths.sum(axis=1) / count
    std = np.sqrt((np.square(lengths - mean[:, None]) * exists).sum(axis=1) / count)
    deficit = np.maximum(deficit, 0)
    paths = np.ceil((deficit + 2.0 * std * np.sqrt(deficit / mean)) / mean).astype(int)
    return np.where(deficit > 0, np.maximum(paths, 1), 0)


class _PathStore:
    """Per-task path buffers that grow as paths start; ``episodes`` keeps complete paths."""

    def __init__(self, k, capacity, horizon, obs_dim, act_dim):
        self.observations = np.zeros((k, capacity, horizon, obs_dim), dtype=np.float32)
        self.actions = np.zeros((k, capacity, horizon, act_dim), dtype=np.float32)
        self.rewards = np.zeros((k, capacity, horizon))
        self.mask = np.zeros((k, capacity, horizon), dtype=np.float32)
        self.complete = np.zeros((k, capacity), dtype=bool)
        self.started = np.zeros(k, dtype=int)   # paths started per task

    def start(self, task: int) -> int:
        """The index of a new path of ``task`` (buffers grown if needed)."""
        index = self.started[task]
        self.ensure(index + 1)
        self.started[task] += 1
        return index

    def ensure(self, paths: int) -> None:
        capacity = self.complete.shape[1]
        if paths <= capacity:
            return
        grow = max(paths, 2 * capacity) - capacity
        for name in ("observations", "actions", "rewards", "mask", "complete"):
            array = getattr(self, name)
            pad = [(0, 0), (0, grow)] + [(0, 0)] * (array.ndim - 2)
            setattr(self, name, np.pad(array, pad))

    def lengths(self) -> np.ndarray:
        """(K, paths started by the busiest task) lengths, 0 for paths not started."""
        return self.mask[:, :self.started.max()].sum(axis=2).astype(np.int64)

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
