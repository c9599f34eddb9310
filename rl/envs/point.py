"""2D point-robot navigation (maml_rl ``PointEnvRandGoal``), single and numpy-vectorised.

State: the position, starting at (0, 0). Action: a velocity, clipped to [-0.1, 0.1]^2 (policy
actions in [-1, 1] are rescaled to it, rllab ``normalize``). Reward: minus the Euclidean
distance to the goal (the paper says squared distance; the released code uses the distance).
Done once both coordinates are within 0.01 of the goal; the sampler cuts paths at the horizon
(100). Goals are uniform in [-0.5, 0.5]^2. The oracle observation appends the goal.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from rl.envs.base import TaskEnv, VectorTaskEnv, rescale_action

ACTION_LOW = -0.1
ACTION_HIGH = 0.1
GOAL_LOW = -0.5
GOAL_HIGH = 0.5
GOAL_TOLERANCE = 0.01


def sample_point_goals(num_tasks: int, rng: np.random.RandomState) -> list:
    """Same call (and so the same numbers for a seeded RandomState) as the original."""
    return list(rng.uniform(GOAL_LOW, GOAL_HIGH, size=(num_tasks, 2)))


def point_transition(state, goal, action):
    """One step for any batch shape: returns (next_state, reward, done)."""
    velocity = rescale_action(action, ACTION_LOW, ACTION_HIGH)
    next_state = state + velocity
    offset = next_state - goal
    reward = -np.sqrt(np.sum(np.square(offset), axis=-1))
    done = np.all(np.abs(offset) < GOAL_TOLERANCE, axis=-1)
    return next_state, reward, done


class PointEnv(TaskEnv):
    """Single point robot; mainly for tests and Gymnasium compatibility.

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import PointEnv
        >>> env = PointEnv(oracle=True)            # the oracle also observes the goal
        >>> env.set_task([0.3, 0.2])
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0]))
        >>> obs, round(reward, 3)                  # moved 0.1 along x; reward: -distance
        (array([0.1, 0. , 0.3, 0.2]), -0.283)
    """

    def __init__(self, oracle: bool = False):
        self.oracle = oracle
        obs_dim = 4 if oracle else 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64)
        self._goal = np.zeros(2)
        self._state = np.zeros(2)

    def sample_tasks(self, num_tasks, rng):
        return sample_point_goals(num_tasks, rng)

    def set_task(self, task):
        self._goal = np.asarray(task, dtype=np.float64).reshape(2)

    def _obs(self):
        return np.concatenate([self._state, self._goal]) if self.oracle else self._state.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = np.zeros(2)
        return self._obs(), {}

    def step(self, action):
        self._state, reward, done = point_transition(self._state, self._goal, action)
        return self._obs(), float(reward), bool(done), False, {}


class VectorPointEnv(VectorTaskEnv):
    """All point robots of a batch as (num_envs, 2) arrays: one numpy op per step.

    Example:
        >>> import numpy as np
        >>> from rl.envs.point import VectorPointEnv
        >>> env = VectorPointEnv(num_envs=3)
        >>> env.set_tasks([[0.1, 0.1], [0.3, 0.0], [-0.2, 0.4]])
        >>> env.reset(seed=0).shape
        (3, 2)
        >>> obs, rewards, dones = env.step(np.ones((3, 2)), np.ones(3, dtype=bool))
        >>> dones                                  # the first robot reached its goal
        array([ True, False, False])
    """

    def __init__(self, num_envs: int, oracle: bool = False):
        self.num_envs = num_envs
        self.oracle = oracle
        self.observation_dim = 4 if oracle else 2
        self.action_dim = 2
        self.goals = np.zeros((num_envs, 2))
        self.states = np.zeros((num_envs, 2))

    def set_tasks(self, tasks):
        if len(tasks) != self.num_envs:
            raise ValueError(f"got {len(tasks)} tasks for {self.num_envs} environments")
        self.goals = np.asarray(tasks, dtype=np.float64).reshape(self.num_envs, 2)

    def _obs(self):
        if self.oracle:
            return np.concatenate([self.states, self.goals], axis=1)
        return self.states.copy()

    def reset(self, seed):
        del seed  # deterministic start at the origin
        self.states = np.zeros((self.num_envs, 2))
        return self._obs()

    def reset_envs(self, indices, seeds):
        del seeds  # deterministic start at the origin
        indices = np.asarray(indices, dtype=int)
        self.states[indices] = 0.0
        return self._obs()[indices]

    def step(self, actions, active):
        next_states, rewards, dones = point_transition(self.states, self.goals, actions)
        self.states = np.where(active[:, None], next_states, self.states)
        return self._obs(), rewards, dones
