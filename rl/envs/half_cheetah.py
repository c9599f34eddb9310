"""Half-cheetah goal velocity and forward/backward (maml_rl ``HalfCheetahEnvRand[Direc]``).

Observation (rllab ``half_cheetah_env``): qpos[1:] (8), qvel (9), torso subtree COM (3) = 20,
plus the task for the oracle. Gymnasium's default (17) drops the COM. Control step: one
0.01 s simulator step (rllab) instead of Gymnasium's frame skip of 5.
"""
from __future__ import annotations

import numpy as np

from rl.envs.mujoco_base import MujocoTaskEnv

CTRL_COST = 0.05  # rllab: 1e-1 * 0.5 * |a|^2


class HalfCheetahEnvBase(MujocoTaskEnv):
    xml_file = "half_cheetah.xml"
    frame_skip = 1

    def _get_obs(self):
        obs = np.concatenate([self.data.qpos[1:], self.data.qvel, self.torso_com()])
        return self._with_oracle(obs)

    def forward_reward(self, velocity: float) -> float:
        raise NotImplementedError

    def step(self, action):
        ctrl = self._simulate(action)
        velocity = float(self.torso_com_velocity()[0])
        ctrl_cost = CTRL_COST * float(np.sum(np.square(ctrl)))
        reward = self.forward_reward(velocity) - ctrl_cost
        info = {"velocity": velocity, "ctrl_cost": ctrl_cost}
        return self._get_obs(), reward, False, False, info


class HalfCheetahVelEnv(HalfCheetahEnvBase):
    """reward = -|v_x - goal| - 0.05 |a|^2, goal ~ U[0, 2]."""

    def sample_tasks(self, num_tasks, rng):
        return list(rng.uniform(0.0, 2.0, size=(num_tasks,)))

    def forward_reward(self, velocity):
        return -abs(velocity - self._task)


class HalfCheetahDirEnv(HalfCheetahEnvBase):
    """reward = direction * v_x - 0.05 |a|^2, direction -1 if U[0, 2] < 1 else +1."""

    def default_task(self):
        return 1.0

    def sample_tasks(self, num_tasks, rng):
        draws = rng.uniform(0.0, 2.0, size=(num_tasks,))
        return list(np.where(draws < 1.0, -1.0, 1.0))

    def forward_reward(self, velocity):
        return self._task * velocity
