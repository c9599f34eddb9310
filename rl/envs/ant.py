"""Ant goal velocity and forward/backward (maml_rl ``AntEnvRand[Direc]``).

Observation (rllab ``ant_env``): qpos (15), qvel (14), clip(cfrc_ext, -1, 1) (14 bodies x 6),
torso rotation matrix (9), torso subtree COM (3) = 125, plus the task for the oracle.
Gymnasium's default (105) drops x, y, the rotation matrix and the COM and does not clip the
contact forces. The start pose is rllab's ``init_qpos`` (torso at 0.55 m, ankles bent).
Control step: two 0.01 s RK4 steps of Gymnasium's model = rllab's one 0.02 s RK4 step.
Gymnasium's ant has gear 150 and ctrl range [-1, 1] where rllab's had gear 1 and range
[-150, 150]: the same torques, and rllab's ``a / scaling`` equals the [-1, 1] command here.
"""
from __future__ import annotations

import mujoco
import numpy as np

from rl.envs.mujoco_base import MujocoTaskEnv

CTRL_COST = 0.005       # 0.5 * 1e-2 * |a / scaling|^2
CONTACT_COST = 0.0005   # 0.5 * 1e-3 * |clip(cfrc_ext, -1, 1)|^2
SURVIVE_REWARD = 0.05
HEIGHT_RANGE = (0.2, 1.0)


class AntEnvBase(MujocoTaskEnv):
    xml_file = "ant.xml"
    frame_skip = 2
    rllab_init_qpos = [0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0,
                       0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]

    def _forward(self):
        super()._forward()
        # cfrc_ext is only filled by the post-constraint RNE pass (not by mj_forward).
        mujoco.mj_rnePostConstraint(self.model, self.data)

    def _contact_forces(self):
        return np.clip(self.data.cfrc_ext, -1.0, 1.0)

    def _get_obs(self):
        obs = np.concatenate([
            self.data.qpos, self.data.qvel, self._contact_forces().ravel(),
            self.data.xmat[self.torso_id], self.torso_com()])
        return self._with_oracle(obs)

    def forward_reward(self, velocity: float) -> float:
        raise NotImplementedError

    def step(self, action):
        ctrl = self._simulate(action)
        velocity = float(self.torso_com_velocity()[0])
        scaling = 0.5 * (self.ctrl_high - self.ctrl_low)
        ctrl_cost = CTRL_COST * float(np.sum(np.square(ctrl / scaling)))
        contact_cost = CONTACT_COST * float(np.sum(np.square(self._contact_forces())))
        reward = self.forward_reward(velocity) - ctrl_cost - contact_cost + SURVIVE_REWARD
        state = np.concatenate([self.data.qpos, self.data.qvel])
        height = self.data.qpos[2]
        alive = np.isfinite(state).all() and HEIGHT_RANGE[0] <= height <= HEIGHT_RANGE[1]
        info = {"velocity": velocity, "ctrl_cost": ctrl_cost, "contact_cost": contact_cost}
        return self._get_obs(), reward, not alive, False, info


class AntVelEnv(AntEnvBase):
    """reward = -|v_x - goal| + 1 - costs + 0.05, goal ~ U[0, 3]."""

    def sample_tasks(self, num_tasks, rng):
        return list(rng.uniform(0.0, 3.0, size=(num_tasks,)))

    def forward_reward(self, velocity):
        return -abs(velocity - self._task) + 1.0


class AntDirEnv(AntEnvBase):
    """reward = direction * v_x - costs + 0.05, direction -1 if U[0, 3] < 1.5 else +1."""

    def default_task(self):
        return 1.0

    def sample_tasks(self, num_tasks, rng):
        draws = rng.uniform(0.0, 3.0, size=(num_tasks,))
        return list(np.where(draws < 1.5, -1.0, 1.0))

    def forward_reward(self, velocity):
        return self._task * velocity
