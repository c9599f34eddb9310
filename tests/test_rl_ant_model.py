"""The ant's model and control step are the original's (issue 15, part 4).

Reference values: cbfinn/maml_rl ``vendor/mujoco_models/ant.xml`` (the rllab model maml_rl's
``AntEnvRand``/``AntEnvRandDirec`` load): ``<option timestep="0.02" integrator="RK4"/>``, geom
default ``solref=".02 1" solimp=".8 .8 .01" margin="0.01" friction="1 0.5 0.5"``, joint
default ``armature="1" damping="1"``, eight motors ``ctrlrange="-150.0 150.0"`` (gear 1),
no ``frame_skip`` numeric (so rllab's ``MujocoEnv.frame_skip`` is 1).
"""
import os

import mujoco
import numpy as np
import pytest

from rl.envs import registry
from rl.envs.mujoco_base import GYMNASIUM_ASSETS


@pytest.fixture(scope="module")
def ant():
    return registry.make_env("ant_vel")


def test_ant_options_contacts_and_actuators_are_the_originals(ant):
    model = ant.model
    assert model.opt.timestep == pytest.approx(0.02)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert ant.frame_skip == 1
    assert model.opt.timestep * ant.frame_skip == pytest.approx(0.02)   # one action = 0.02 s
    assert model.ngeom == 14          # floor + torso + 12 leg capsules: every geom checked
    np.testing.assert_allclose(model.geom_solimp[:, :3], np.tile([0.8, 0.8, 0.01], (14, 1)))
    np.testing.assert_allclose(model.geom_solref, np.tile([0.02, 1.0], (14, 1)))
    np.testing.assert_allclose(model.geom_margin, 0.01)
    np.testing.assert_allclose(model.geom_friction, np.tile([1.0, 0.5, 0.5], (14, 1)))
    assert model.nu == 8
    np.testing.assert_allclose(model.actuator_gear[:, 0], 1.0)
    np.testing.assert_allclose(model.actuator_ctrlrange, np.tile([-150.0, 150.0], (8, 1)))
    # joint defaults (the free root joint has armature 0 and damping 0 in both files)
    np.testing.assert_allclose(model.dof_armature[6:], 1.0)
    np.testing.assert_allclose(model.dof_damping[6:], 1.0)


def test_ant_body_tree_is_gymnasiums_apart_from_the_three_settings(ant):
    """Masses, inertias, geometry and joint ranges equal Gymnasium's compiled file: the
    edit touches only the timestep, the contact defaults and the actuators."""
    gym = mujoco.MjModel.from_xml_path(os.path.join(GYMNASIUM_ASSETS, "ant.xml"))
    model = ant.model
    for name in ("body_mass", "body_inertia", "body_pos", "geom_size", "geom_pos",
                 "jnt_range", "dof_armature", "dof_damping", "geom_friction", "geom_margin"):
        np.testing.assert_array_equal(getattr(model, name), getattr(gym, name), err_msg=name)
    assert gym.opt.timestep == pytest.approx(0.01)         # what was changed, for the record
    assert not np.allclose(gym.geom_solimp[:, :3], model.geom_solimp[:, :3])


def test_ant_one_action_is_one_simulator_step_with_the_originals_torques(ant):
    ant.set_task(1.0)
    ant.reset(seed=0)
    start = ant.data.time
    action = np.linspace(-0.9, 0.9, 8)
    _, reward, _, _, info = ant.step(action)
    assert ant.data.time - start == pytest.approx(0.02)
    np.testing.assert_allclose(ant.data.ctrl, 150.0 * action)          # rllab's normalize
    np.testing.assert_allclose(ant.data.actuator_force, 150.0 * action)
    assert info["ctrl_cost"] == pytest.approx(0.005 * np.sum(action ** 2))   # a / scaling
