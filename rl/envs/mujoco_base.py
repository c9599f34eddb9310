"""MuJoCo task environments on Gymnasium's models, with rllab's dynamics conventions.

Why not ``gymnasium.make("HalfCheetah-v5")`` plus a reward wrapper: the original (rllab
``MujocoEnv``) differs from Gymnasium v5 in the control step (rllab: one simulator step per
action, so dt = 0.01 s for the cheetah and 0.02 s for the ant; Gymnasium: 5 steps), in the reset
noise (rllab: Gaussian, 0.01 on positions and 0.1 on velocities), in the observations and in the
velocity used by the reward (rllab: the torso subtree's centre-of-mass velocity). This class
loads Gymnasium's XML files directly with ``mujoco`` and reproduces those conventions; see
docs/RL.md for the list of remaining differences.
"""
from __future__ import annotations

import functools
import os

import gymnasium.envs.mujoco as gym_mujoco
import mujoco
import numpy as np
from absl import logging
from gymnasium import spaces

from rl.envs.base import TaskEnv, rescale_action
from rl.envs.registry import RELEASED_BACKWARD_FRACTION

GYMNASIUM_ASSETS = os.path.join(os.path.dirname(gym_mujoco.__file__), "assets")

_warnings_routed = False


@functools.lru_cache(maxsize=None)
def _read_asset(name: str) -> str:
    """Gymnasium's XML text, read once per process (hundreds of envs are built per run)."""
    with open(os.path.join(GYMNASIUM_ASSETS, name)) as handle:
        return handle.read()


def route_mujoco_warnings() -> None:
    """Sends MuJoCo's warnings to the Python log instead of ``MUJOCO_LOG.TXT`` in the cwd.

    MuJoCo 4 warns that the half-cheetah's ``settotalmass`` is deprecated on every model
    compilation and, without a handler, appends that to MUJOCO_LOG.TXT in the working
    directory (which would land in the repository).
    """
    global _warnings_routed
    if _warnings_routed:
        return

    def _handler(message: str) -> None:
        if "settotalmass" in message:
            logging.debug("MuJoCo: %s", message)
        else:
            logging.warning("MuJoCo: %s", message)

    mujoco.set_mju_user_warning(_handler)
    _warnings_routed = True


class MujocoTaskEnv(TaskEnv):
    """Base class: model loading, rllab reset noise, one control step, task bookkeeping.

    Stepping is written once, for a batch: ``batch_step(envs, actions)`` simulates each env
    (the MuJoCo calls are per env) and then computes every observation and reward with whole-
    array numpy operations, which is what makes in-process sampling of hundreds of envs fast
    (per-env Python work was about half the step time). ``step`` is a batch of one.

    Example:
        >>> import numpy as np
        >>> from rl.envs.half_cheetah import HalfCheetahVelEnv
        >>> envs = [HalfCheetahVelEnv() for _ in range(2)]     # any MujocoTaskEnv subclass
        >>> for env, seed in zip(envs, (0, 1)):
        ...     env.set_task(1.0)
        ...     _ = env.reset(seed=seed)
        >>> obs, rewards, dones, info = HalfCheetahVelEnv.batch_step(envs, np.zeros((2, 6)))
        >>> obs.shape, rewards.shape, dones, info["ctrl_cost"]
        ((2, 20), (2,), array([False, False]), array([0., 0.]))
    """

    xml_file: str = ""
    frame_skip: int = 1
    #: rllab's ``init_qpos`` when its model defined one (else the model's qpos0).
    rllab_init_qpos = None
    #: True: a full ``mj_forward`` after each step (needed when the observation reads
    #: constraint forces). False: only the position/velocity kinematics that observations and
    #: rewards read (same numbers bit for bit, half the simulator time for the cheetah).
    full_forward: bool = True

    def __init__(self, oracle: bool = False):
        route_mujoco_warnings()
        self.model = mujoco.MjModel.from_xml_string(self.model_xml())
        self.data = mujoco.MjData(self.model)
        self.oracle = oracle
        self.torso_id = self.model.body("torso").id
        self.init_qpos = (np.array(self.rllab_init_qpos, dtype=np.float64)
                          if self.rllab_init_qpos is not None else self.model.qpos0.copy())
        self.init_qvel = np.zeros(self.model.nv)
        self.ctrl_low = self.model.actuator_ctrlrange[:, 0].copy()
        self.ctrl_high = self.model.actuator_ctrlrange[:, 1].copy()
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float64)
        # numpy views into MjData (valid as long as self.data lives): batch_step gathers
        # from them without re-wrapping the buffers at every step.
        self.qpos, self.qvel, self.ctrl = self.data.qpos, self.data.qvel, self.data.ctrl
        self.torso_com_view = self.data.subtree_com[self.torso_id]
        self.torso_velocity_view = self.data.subtree_linvel[self.torso_id]
        self.torso_xmat_view = self.data.xmat[self.torso_id]
        self.cfrc_ext = self.data.cfrc_ext
        self._task = self.default_task()
        self._rng = np.random.default_rng()
        self._set_state(self.init_qpos, self.init_qvel)
        obs_dim = self._get_obs().shape[0]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64)

    @classmethod
    def model_xml(cls) -> str:
        """The MJCF text compiled for this task: Gymnasium's file (subclasses edit it where
        the original's model differs, e.g. the ant)."""
        return _read_asset(cls.xml_file)

    # ----- task distribution -----
    def default_task(self):
        return 0.0

    def set_task(self, task):
        self._task = float(task)

    # ----- simulation -----
    def _set_state(self, qpos, qvel):
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        self.data.qacc[:] = 0.0
        self.data.ctrl[:] = 0.0
        self._forward()

    def _forward(self):
        """rllab calls ``model.forward()`` after stepping, so rewards and observations see
        positions, centres of mass and velocities of the *new* state. The extra pass does not
        change the dynamics (``mj_step`` recomputes everything from qpos/qvel/ctrl)."""
        if self.full_forward:
            mujoco.mj_forward(self.model, self.data)
        else:
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_comVel(self.model, self.data)
        mujoco.mj_subtreeVel(self.model, self.data)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        qpos = self.init_qpos + self._rng.normal(size=self.model.nq) * 0.01
        qvel = self.init_qvel + self._rng.normal(size=self.model.nv) * 0.1
        self._set_state(qpos, qvel)
        return self._get_obs(), {}

    @classmethod
    def batch_step(cls, envs, actions):
        """Steps ``envs`` (instances of ``cls``) with raw policy actions (len(envs), act_dim).

        Returns (observations, rewards, dones, infos) as arrays over the envs; infos is a dict
        of arrays (the reward terms).
        """
        first = envs[0]
        ctrl = rescale_action(actions, first.ctrl_low, first.ctrl_high)
        for env, command in zip(envs, ctrl):
            env.ctrl[:] = command
            mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
            env._forward()
        tasks = np.array([env._task for env in envs], dtype=np.float64)
        velocity = np.array([env.torso_velocity_view[0] for env in envs])
        return cls._batch_outputs(envs, ctrl, tasks, velocity)

    @classmethod
    def _batch_outputs(cls, envs, ctrl, tasks, velocity):
        """(observations, rewards, dones, infos) of freshly stepped envs."""
        raise NotImplementedError

    @classmethod
    def _batch_obs(cls, envs, tasks) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def forward_reward(velocity, task):
        """Task term of the reward, elementwise over arrays of velocities and tasks (the
        task families below)."""
        raise NotImplementedError

    def step(self, action):
        obs, reward, done, info = self.batch_step([self], np.asarray(action)[None])
        return (obs[0], float(reward[0]), bool(done[0]), False,
                {key: float(value[0]) for key, value in info.items()})

    def torso_com(self) -> np.ndarray:
        """rllab ``get_body_com('torso')``: ``com_subtree`` of the torso."""
        return self.torso_com_view

    @classmethod
    def _with_oracle(cls, envs, obs: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        """Oracle variants see the task (one number per env) after the observation."""
        return np.concatenate([obs, tasks[:, None]], axis=1) if envs[0].oracle else obs

    def _get_obs(self) -> np.ndarray:
        return self._batch_obs([self], np.array([self._task], dtype=np.float64))[0]


# ----- the two task families of the locomotion envs (maml_rl's *EnvRand and *EnvRandDirec):
# mixed in before a body's base class, which calls cls.forward_reward in its reward.
class GoalVelocityTasks:
    """Run at a goal velocity: task term ``-|v_x - goal| + velocity_bonus``, goal drawn
    uniformly from ``goal_range``.

    Example:
        >>> import numpy as np
        >>> from rl.envs.ant import AntVelEnv
        >>> AntVelEnv.goal_range, AntVelEnv.velocity_bonus
        ((0.0, 3.0), 1.0)
        >>> AntVelEnv.forward_reward(np.array([0.5, 2.0]), np.array([1.0, 1.0]))
        array([0.5, 0. ])
    """

    goal_range: tuple = (0.0, 1.0)
    velocity_bonus: float = 0.0

    def sample_tasks(self, num_tasks, rng):
        return list(rng.uniform(*self.goal_range, size=(num_tasks,)))

    @classmethod
    def forward_reward(cls, velocity, task):
        return -np.abs(velocity - task) + cls.velocity_bonus


class DirectionTasks:
    """Run forward (+1) or backward (-1): task term ``direction * v_x``. As the original, a
    uniform draw from ``direction_draw_range`` decides: below its middle means backward (the
    released environments); forward by default.

    ``backward_fraction`` moves that threshold to the given fraction of the range, so that
    the same draws (the same seed) give the task mixes of an earlier state of maml_rl: the
    code committed the day the paper's test results were written (4d41869) called a draw
    below 0.4 backward, on test goals drawn from [0.1, 0.8] (3/7 of them backward) and
    training goals drawn from [0, 2] (cheetah: 1/5) or [0, 3] (ant: 2/15). RL.md "Which tasks
    made the paper's forward/backward numbers".

        >>> from rl.envs.half_cheetah import HalfCheetahDirEnv
        >>> env = HalfCheetahDirEnv()                                 # draws 0.83, 1.44, 0.00
        >>> [float(t) for t in env.sample_tasks(3, np.random.RandomState(1))]
        [-1.0, 1.0, -1.0]
        >>> [float(t) for t in env.sample_tasks(3, np.random.RandomState(1), 0.2)]
        [1.0, 1.0, -1.0]
    """

    direction_draw_range: tuple = (0.0, 2.0)

    def default_task(self):
        return 1.0

    def sample_tasks(self, num_tasks, rng,
                     backward_fraction: float = RELEASED_BACKWARD_FRACTION):
        low, high = self.direction_draw_range
        draws = rng.uniform(low, high, size=(num_tasks,))
        return list(np.where(draws < low + backward_fraction * (high - low), -1.0, 1.0))

    @staticmethod
    def forward_reward(velocity, task):
        return task * velocity
