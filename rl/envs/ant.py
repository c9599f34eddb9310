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

    @staticmethod
    def _contact_forces(envs):
        return np.clip(np.stack([env.cfrc_ext for env in envs]), -1.0, 1.0)

    @classmethod
    def _batch_obs(cls, envs, tasks):
        contact = cls._contact_forces(envs)
        obs = np.concatenate([
            np.stack([env.qpos for env in envs]), np.stack([env.qvel for env in envs]),
            contact.reshape(len(envs), -1),
            np.stack([env.torso_xmat_view for env in envs]),
            np.stack([env.torso_com_view for env in envs])], axis=1)
        return cls._with_oracle(envs, obs, tasks)

    @staticmethod
    def forward_reward(velocity, task):
        """Task term of the reward, elementwise over arrays of velocities and tasks."""
        raise NotImplementedError

    @classmethod
    def _batch_outputs(cls, envs, ctrl, tasks, velocity):
        first = envs[0]
        obs = cls._batch_obs(envs, tasks)
        # the state and the clipped contact forces are the observation's leading columns
        num_state = first.model.nq + first.model.nv
        state = obs[:, :num_state]
        contact = obs[:, num_state:num_state + first.cfrc_ext.size]
        scaling = 0.5 * (first.ctrl_high - first.ctrl_low)
        ctrl_cost = CTRL_COST * np.sum(np.square(ctrl / scaling), axis=1)
        contact_cost = CONTACT_COST * np.sum(np.square(contact), axis=1)
        reward = cls.forward_reward(velocity, tasks) - ctrl_cost - contact_cost + SURVIVE_REWARD
        height = state[:, 2]
        alive = (np.isfinite(state).all(axis=1)
                 & (HEIGHT_RANGE[0] <= height) & (height <= HEIGHT_RANGE[1]))
        info = {"velocity": velocity, "ctrl_cost": ctrl_cost, "contact_cost": contact_cost}
        return obs, reward, ~alive, info


class AntVelEnv(AntEnvBase):
    """reward = -|v_x - goal| + 1 - costs + 0.05, goal ~ U[0, 3]."""

    def sample_tasks(self, num_tasks, rng):
        return list(rng.uniform(0.0, 3.0, size=(num_tasks,)))

    @staticmethod
    def forward_reward(velocity, task):
        return -np.abs(velocity - task) + 1.0


class AntDirEnv(AntEnvBase):
    """reward = direction * v_x - costs + 0.05, direction -1 if U[0, 3] < 1.5 else +1."""

    def default_task(self):
        return 1.0

    def sample_tasks(self, num_tasks, rng):
        draws = rng.uniform(0.0, 3.0, size=(num_tasks,))
        return list(np.where(draws < 1.5, -1.0, 1.0))

    @staticmethod
    def forward_reward(velocity, task):
        return task * velocity
