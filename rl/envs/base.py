"""Shared pieces of the task environments and the vector-environment interface.

The sampler only ever talks to a ``VectorTaskEnv``: ``set_tasks`` (one task per environment),
``reset`` and ``step`` on whole batches. The point robot implements it natively in numpy; the
MuJoCo tasks get it from ``SerialVectorEnv`` (a list of single environments), which a worker
process can also serve (``rl.envs.workers.ProcessVectorEnv``).
"""
from __future__ import annotations

import abc
from typing import Sequence

import gymnasium as gym
import numpy as np


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """rllab's ``normalize``: map [-1, 1] affinely onto [low, high], then clip.

    The policy's Gaussian samples are unbounded; the stored action (used for likelihoods)
    stays raw, only the environment sees the clipped command, as in the original.
    """
    scaled = low + (np.asarray(action) + 1.0) * 0.5 * (high - low)
    return np.clip(scaled, low, high)


def env_seeds(seed: int, num_envs: int) -> np.ndarray:
    """One reset seed per environment, derived from the batch seed."""
    return np.random.SeedSequence(seed).generate_state(num_envs)


class TaskEnv(gym.Env, abc.ABC):
    """A Gymnasium environment that is one member of a task distribution.

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import PointEnv
        >>> env = PointEnv()                       # a TaskEnv: draw tasks, set one, run it
        >>> goals = env.sample_tasks(2, np.random.RandomState(1))
        >>> env.set_task(goals[0])
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.array([1.0, 1.0]))
        >>> obs, round(reward, 3), terminated
        (array([0.1, 0.1]), -0.219, False)
    """

    @abc.abstractmethod
    def sample_tasks(self, num_tasks: int, rng: np.random.RandomState) -> list:
        """Draws ``num_tasks`` tasks. ``rng`` is a legacy RandomState so that
        ``RandomState(1)`` reproduces the original's ``np.random.seed(1)`` test goals."""

    @abc.abstractmethod
    def set_task(self, task) -> None:
        """Makes ``task`` the current task (takes effect from the next reset)."""

    @classmethod
    def batch_step(cls, envs, actions):
        """Steps several instances at once: (observations, rewards, dones, infos) as arrays.
        This default loops over ``step``; MuJoCo tasks override it with array operations."""
        results = [env.step(action) for env, action in zip(envs, actions)]
        return (np.stack([r[0] for r in results]), np.array([r[1] for r in results]),
                np.array([r[2] for r in results], dtype=bool), {})


class VectorTaskEnv(abc.ABC):
    """A batch of environments stepped together; finished ones are frozen (not stepped).

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import VectorPointEnv
        >>> env = VectorPointEnv(num_envs=2)       # a VectorTaskEnv: one task per env
        >>> env.set_tasks([np.array([0.3, 0.2]), np.array([-0.4, 0.1])])
        >>> obs = env.reset(seed=0)
        >>> obs, rewards, dones = env.step(np.ones((2, 2)), active=np.array([True, False]))
        >>> obs                                    # the second env was not stepped
        array([[0.1, 0.1],
               [0. , 0. ]])
    """

    num_envs: int
    observation_dim: int
    action_dim: int

    @abc.abstractmethod
    def set_tasks(self, tasks: Sequence) -> None:
        """One task per environment (``len(tasks) == num_envs``)."""

    @abc.abstractmethod
    def reset(self, seed: int) -> np.ndarray:
        """Resets every environment; returns observations of shape (num_envs, obs_dim)."""

    def reset_envs(self, indices: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Resets only the environments ``indices`` (one seed each) and returns their
        observations, (len(indices), obs_dim): a budget sampler starts a new path in one
        environment while the others are mid-path."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset single environments")

    @abc.abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray):
        """Steps the environments where ``active`` is True with raw policy actions.

        Returns (observations, rewards, dones); entries of inactive environments are
        unspecified (the sampler masks them).
        """

    def close(self) -> None:
        """Releases workers or simulators (no-op by default)."""


class SerialVectorEnv(VectorTaskEnv):
    """Steps a list of single ``TaskEnv`` instances in a Python loop (one process).

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import PointEnv
        >>> env = SerialVectorEnv([PointEnv(), PointEnv()])
        >>> env.num_envs, env.observation_dim, env.action_dim
        (2, 2, 2)
        >>> env.set_tasks([np.array([0.3, 0.2]), np.array([-0.4, 0.1])])
        >>> obs = env.reset(seed=0)
        >>> obs, rewards, dones = env.step(np.ones((2, 2)), np.array([True, True]))
        >>> rewards.round(3), dones
        (array([-0.224, -0.5  ]), array([False, False]))
    """

    def __init__(self, envs: Sequence[TaskEnv]):
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self.observation_dim = int(self.envs[0].observation_space.shape[0])
        self.action_dim = int(self.envs[0].action_space.shape[0])
        self._last_obs = np.zeros((self.num_envs, self.observation_dim))

    def set_tasks(self, tasks):
        if len(tasks) != self.num_envs:
            raise ValueError(f"got {len(tasks)} tasks for {self.num_envs} environments")
        for env, task in zip(self.envs, tasks):
            env.set_task(task)

    def reset(self, seed):
        return self.reset_with_seeds(env_seeds(seed, self.num_envs))

    def reset_with_seeds(self, seeds):
        """Per-environment seeds: a worker pool passes each worker its slice, so results do
        not depend on how many workers there are."""
        for i, env in enumerate(self.envs):
            self._last_obs[i], _ = env.reset(seed=int(seeds[i]))
        return self._last_obs.copy()

    def reset_envs(self, indices, seeds):
        for i, seed in zip(indices, seeds):
            self._last_obs[i], _ = self.envs[i].reset(seed=int(seed))
        return self._last_obs[np.asarray(indices, dtype=int)].copy()

    def step(self, actions, active):
        rewards = np.zeros(self.num_envs)
        dones = np.zeros(self.num_envs, dtype=bool)
        index = np.flatnonzero(active)
        if index.size:
            obs, rewards[index], dones[index], _ = type(self.envs[0]).batch_step(
                [self.envs[i] for i in index], np.asarray(actions)[index])
            self._last_obs[index] = obs
        return self._last_obs.copy(), rewards, dones

    def close(self):
        for env in self.envs:
            env.close()
