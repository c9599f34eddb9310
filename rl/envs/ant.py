"""Ant goal velocity and forward/backward (maml_rl ``AntEnvRand[Direc]``).

Observation (rllab ``ant_env``): qpos (15), qvel (14), clip(cfrc_ext, -1, 1) (14 bodies x 6),
torso rotation matrix (9), torso subtree COM (3) = 125, plus the task for the oracle.
Gymnasium's default (105) drops x, y, the rotation matrix and the COM and does not clip the
contact forces. The start pose is rllab's ``init_qpos`` (torso at 0.55 m, ankles bent).

Model: the original's ``vendor/mujoco_models/ant.xml`` (cbfinn/maml_rl) differs from
Gymnasium's ``ant.xml`` in three places, which ``model_xml`` sets back to the original's
values on Gymnasium's text (the body tree, joints, masses and the other defaults are the
same; Gymnasium's file only adds a tracking camera):
* ``<option timestep="0.02" integrator="RK4">`` (Gymnasium 0.01), and no ``frame_skip``
  numeric, so rllab's ``MujocoEnv`` makes ONE 0.02 s step per action (frame skip 1);
* geom default ``solref=".02 1" solimp=".8 .8 .01"`` (Gymnasium leaves MuJoCo's
  ``solimp="0.9 0.95 0.001"``): softer, wider contacts for every geom, floor included;
* motors with ``ctrlrange="-150 150"`` and gear 1 (Gymnasium: range [-1, 1], gear 150).
  The torques are the same either way; rllab's ``a / scaling`` control cost is the [-1, 1]
  command in both.
What is left is the simulator version (MuJoCo 4 here, 1.31 for the original).
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import mujoco
import numpy as np

from rl.envs.mujoco_base import DirectionTasks, GoalVelocityTasks, MujocoTaskEnv

CTRL_COST = 0.005       # 0.5 * 1e-2 * |a / scaling|^2
CONTACT_COST = 0.0005   # 0.5 * 1e-3 * |clip(cfrc_ext, -1, 1)|^2
SURVIVE_REWARD = 0.05
HEIGHT_RANGE = (0.2, 1.0)
#: The original's ant.xml (cbfinn/maml_rl vendor/mujoco_models/ant.xml).
RLLAB_TIMESTEP = 0.02
RLLAB_INTEGRATOR = "RK4"
RLLAB_GEOM_SOLREF = (0.02, 1.0)
RLLAB_GEOM_SOLIMP = (0.8, 0.8, 0.01)
RLLAB_CTRL_RANGE = (-150.0, 150.0)
RLLAB_GEAR = 1.0


class AntEnvBase(MujocoTaskEnv):
    """The ant body: rllab's 125-dim observation, the original's model settings (module
    docstring), contact and control costs, and the end of a path when the torso leaves
    [0.2, 1.0] m; the task families below mix in the reward's task term.

    Example:
        >>> from rl.envs.ant import AntDirEnv
        >>> env = AntDirEnv()                      # an AntEnvBase
        >>> env.observation_space.shape, env.action_space.shape
        ((125,), (8,))
        >>> env.model.opt.timestep, env.frame_skip, [float(c) for c in env.ctrl_high[:2]]
        (0.02, 1, [150.0, 150.0])
    """

    xml_file = "ant.xml"
    frame_skip = 1          # rllab: one 0.02 s RK4 step per action
    rllab_init_qpos = [0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0,
                       0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]

    @classmethod
    def model_xml(cls) -> str:
        """Gymnasium's ant.xml with the original's timestep, geom contact defaults and
        actuators (module docstring)."""
        return _rllab_ant_xml(super().model_xml())

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


class AntVelEnv(GoalVelocityTasks, AntEnvBase):
    """reward = -|v_x - goal| + 1 - costs + 0.05, goal ~ U[0, 3].

    Example:
        >>> import numpy as np
        >>> from rl.envs.ant import AntVelEnv
        >>> env = AntVelEnv(oracle=True)           # the oracle also observes the goal
        >>> [round(float(goal), 2) for goal in env.sample_tasks(3, np.random.RandomState(1))]
        [1.25, 2.16, 0.0]
        >>> env.set_task(2.0)
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.zeros(8))
        >>> obs.shape, float(obs[-1]), terminated
        ((126,), 2.0, False)
    """

    goal_range = (0.0, 3.0)
    velocity_bonus = 1.0


class AntDirEnv(DirectionTasks, AntEnvBase):
    """reward = direction * v_x - costs + 0.05, direction -1 if U[0, 3] < 1.5 else +1.

    Example:
        >>> import numpy as np
        >>> from rl.envs.ant import AntDirEnv
        >>> env = AntDirEnv()
        >>> [float(d) for d in env.sample_tasks(3, np.random.RandomState(1))]   # 1.25, 2.16, 0.0
        [-1.0, 1.0, -1.0]
        >>> env.set_task(1.0)
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.zeros(8))
        >>> obs.shape, terminated, sorted(info)
        ((125,), False, ['contact_cost', 'ctrl_cost', 'velocity'])
    """

    direction_draw_range = (0.0, 3.0)


_XML_CACHE: dict = {}


def _rllab_ant_xml(gymnasium_xml: str) -> str:
    if gymnasium_xml in _XML_CACHE:
        return _XML_CACHE[gymnasium_xml]
    root = ElementTree.fromstring(gymnasium_xml)
    option = root.find("option")
    option.set("timestep", repr(RLLAB_TIMESTEP))
    option.set("integrator", RLLAB_INTEGRATOR)
    geom_default = root.find("default/geom")
    geom_default.set("solref", " ".join(map(repr, RLLAB_GEOM_SOLREF)))
    geom_default.set("solimp", " ".join(map(repr, RLLAB_GEOM_SOLIMP)))
    motors = root.findall("actuator/motor")
    if len(motors) != 8:
        raise ValueError(f"expected the ant's 8 motors in Gymnasium's ant.xml, found "
                         f"{len(motors)}")
    for motor in motors:
        motor.set("ctrlrange", " ".join(map(repr, RLLAB_CTRL_RANGE)))
        motor.set("gear", repr(RLLAB_GEAR))
    for geom in root.iter("geom"):   # nothing may override the defaults set above
        if geom is not geom_default and ("solimp" in geom.attrib or "solref" in geom.attrib):
            raise ValueError(f"Gymnasium's ant.xml overrides contact parameters on geom "
                             f"{geom.get('name')!r}; the original's did not")
    _XML_CACHE[gymnasium_xml] = ElementTree.tostring(root, encoding="unicode")
    return _XML_CACHE[gymnasium_xml]
