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

import os

import gymnasium.envs.mujoco as gym_mujoco
import mujoco
import numpy as np
from absl import logging
from gymnasium import spaces

from rl.envs.base import TaskEnv, rescale_action

GYMNASIUM_ASSETS = os.path.join(os.path.dirname(gym_mujoco.__file__), "assets")

_warnings_routed = False


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
    """Base class: model loading, rllab reset noise, one control step, task bookkeeping."""

    xml_file: str = ""
    frame_skip: int = 1
    #: rllab's ``init_qpos`` when its model defined one (else the model's qpos0).
    rllab_init_qpos = None

    def __init__(self, oracle: bool = False):
        route_mujoco_warnings()
        self.model = mujoco.MjModel.from_xml_path(os.path.join(GYMNASIUM_ASSETS, self.xml_file))
        self.data = mujoco.MjData(self.model)
        self.oracle = oracle
        self.torso_id = self.model.body("torso").id
        self.init_qpos = (np.array(self.rllab_init_qpos, dtype=np.float64)
                          if self.rllab_init_qpos is not None else self.model.qpos0.copy())
        self.init_qvel = np.zeros(self.model.nv)
        self.ctrl_low = self.model.actuator_ctrlrange[:, 0].copy()
        self.ctrl_high = self.model.actuator_ctrlrange[:, 1].copy()
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float64)
        self._task = self.default_task()
        self._rng = np.random.default_rng()
        self._set_state(self.init_qpos, self.init_qvel)
        obs_dim = self._get_obs().shape[0]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64)

    # ----- task distribution -----
    def default_task(self):
        return 0.0

    def set_task(self, task):
        self._task = float(task)

    def get_task(self):
        return self._task

    # ----- simulation -----
    def _set_state(self, qpos, qvel):
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        self.data.qacc[:] = 0.0
        self.data.ctrl[:] = 0.0
        self._forward()

    def _forward(self):
        """rllab calls ``model.forward()`` after stepping, so rewards and observations see
        positions, centres of mass and velocities of the *new* state."""
        mujoco.mj_forward(self.model, self.data)
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

    def _simulate(self, action) -> np.ndarray:
        """Applies the rescaled, clipped action for ``frame_skip`` steps; returns it."""
        ctrl = rescale_action(action, self.ctrl_low, self.ctrl_high)
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        self._forward()
        return ctrl

    def torso_com_velocity(self) -> np.ndarray:
        """rllab ``get_body_comvel('torso')``: linear velocity of the torso subtree's COM."""
        return self.data.subtree_linvel[self.torso_id]

    def torso_com(self) -> np.ndarray:
        """rllab ``get_body_com('torso')``: ``com_subtree`` of the torso."""
        return self.data.subtree_com[self.torso_id]

    def _task_features(self) -> np.ndarray:
        return np.array([self._task], dtype=np.float64)

    def _with_oracle(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self._task_features()]) if self.oracle else obs

    def _get_obs(self) -> np.ndarray:
        raise NotImplementedError
