"""Half-cheetah goal velocity and forward/backward (maml_rl ``HalfCheetahEnvRand[Direc]``).

Observation (rllab ``half_cheetah_env``): qpos[1:] (8), qvel (9), torso subtree COM (3) = 20,
plus the task for the oracle. Gymnasium's default (17) drops the COM. Control step: one
0.01 s simulator step (rllab) instead of Gymnasium's frame skip of 5.
"""
from __future__ import annotations

import numpy as np

from rl.envs.mujoco_base import DirectionTasks, GoalVelocityTasks, MujocoTaskEnv

CTRL_COST = 0.05  # rllab: 1e-1 * 0.5 * |a|^2


class HalfCheetahEnvBase(MujocoTaskEnv):
    """The half-cheetah body (rllab's observation, control step and control cost); the task
    families below mix in the reward's task term.

    Example:
        >>> from rl.envs.half_cheetah import HalfCheetahVelEnv
        >>> env = HalfCheetahVelEnv()              # a HalfCheetahEnvBase
        >>> env.observation_space.shape, env.action_space.shape, env.model.opt.timestep
        ((20,), (6,), 0.01)
        >>> HalfCheetahVelEnv(oracle=True).observation_space.shape     # plus the goal
        (21,)
    """

    xml_file = "half_cheetah.xml"
    frame_skip = 1
    full_forward = False   # no contact forces in the observation

    @classmethod
    def _batch_obs(cls, envs, tasks):
        obs = np.concatenate([np.stack([env.qpos[1:] for env in envs]),
                              np.stack([env.qvel for env in envs]),
                              np.stack([env.torso_com_view for env in envs])], axis=1)
        return cls._with_oracle(envs, obs, tasks)

    @classmethod
    def _batch_outputs(cls, envs, ctrl, tasks, velocity):
        ctrl_cost = CTRL_COST * np.sum(np.square(ctrl), axis=1)
        reward = cls.forward_reward(velocity, tasks) - ctrl_cost
        info = {"velocity": velocity, "ctrl_cost": ctrl_cost}
        return cls._batch_obs(envs, tasks), reward, np.zeros(len(envs), dtype=bool), info


class HalfCheetahVelEnv(GoalVelocityTasks, HalfCheetahEnvBase):
    """reward = -|v_x - goal| - 0.05 |a|^2, goal ~ U[0, 2].

    Example:
        >>> import numpy as np
        >>> from rl.envs.half_cheetah import HalfCheetahVelEnv
        >>> env = HalfCheetahVelEnv()
        >>> [round(float(goal), 2) for goal in env.sample_tasks(3, np.random.RandomState(1))]
        [0.83, 1.44, 0.0]
        >>> env.set_task(1.5)
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.zeros(6))
        >>> obs.shape, terminated, info["ctrl_cost"]
        ((20,), False, 0.0)
    """

    goal_range = (0.0, 2.0)


class HalfCheetahDirEnv(DirectionTasks, HalfCheetahEnvBase):
    """reward = direction * v_x - 0.05 |a|^2, direction -1 if U[0, 2] < 1 else +1.

    Example:
        >>> import numpy as np
        >>> from rl.envs.half_cheetah import HalfCheetahDirEnv
        >>> env = HalfCheetahDirEnv()
        >>> [float(d) for d in env.sample_tasks(3, np.random.RandomState(1))]   # 0.83, 1.44, 0.0
        [-1.0, 1.0, -1.0]
        >>> env.set_task(-1.0)                     # run backward
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.zeros(6))
        >>> bool(np.isclose(reward, -info["velocity"]))    # zero action: no control cost
        True
    """

    direction_draw_range = (0.0, 2.0)
