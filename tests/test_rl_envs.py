"""Task environments: rewards equal the original formulas, registry errors, no MuJoCo log."""
import os

import numpy as np
import pytest

from rl.envs import registry
from rl.envs.point import PointEnv, VectorPointEnv


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert not os.path.exists(tmp_path / "MUJOCO_LOG.TXT"), "MuJoCo wrote a log into the cwd"


def test_point_rewards_follow_the_formula():
    env = PointEnv()
    env.set_task([0.3, -0.2])
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    # +1 in both coordinates -> velocity clipped to (0.1, 0.1); 5.0 is also clipped to 0.1
    obs, reward, done, truncated, _ = env.step(np.array([1.0, 5.0]))
    np.testing.assert_allclose(obs, [0.1, 0.1])
    assert reward == pytest.approx(-np.hypot(0.1 - 0.3, 0.1 + 0.2))
    assert not done and not truncated
    obs, reward, _, _, _ = env.step(np.array([0.0, -1.0]))   # action 0 -> velocity 0
    np.testing.assert_allclose(obs, [0.1 + 0.0, 0.0], atol=1e-12)
    assert reward == pytest.approx(-np.hypot(0.1 - 0.3, 0.0 + 0.2))


def test_point_done_within_tolerance_in_both_coordinates():
    env = PointEnv()
    env.set_task([0.105, 0.05])
    env.reset()
    _, _, done, _, _ = env.step(np.array([1.0, 1.0]))  # at (0.1, 0.1): y is 0.05 away
    assert not done
    env.set_task([0.105, 0.095])
    env.reset()
    _, reward, done, _, _ = env.step(np.array([1.0, 1.0]))
    assert done and reward == pytest.approx(-np.hypot(0.005, 0.005))


def test_vector_point_matches_single_and_oracle_obs():
    goals = PointEnv().sample_tasks(3, np.random.RandomState(1))
    np.testing.assert_array_equal(goals, np.random.RandomState(1).uniform(-0.5, 0.5, (3, 2)))
    vec = VectorPointEnv(3, oracle=True)
    vec.set_tasks(goals)
    obs = vec.reset(seed=0)
    np.testing.assert_array_equal(obs[:, 2:], np.asarray(goals))
    actions = np.random.default_rng(0).uniform(-2, 2, size=(3, 2))
    obs, rewards, dones = vec.step(actions, np.ones(3, dtype=bool))
    for k in range(3):
        single = PointEnv(oracle=True)
        single.set_task(goals[k])
        single.reset()
        s_obs, s_reward, s_done, _, _ = single.step(actions[k])
        np.testing.assert_allclose(obs[k], s_obs)
        assert rewards[k] == pytest.approx(s_reward) and dones[k] == s_done
    frozen = vec.states.copy()
    vec.step(actions, np.zeros(3, dtype=bool))               # inactive: not moved
    np.testing.assert_array_equal(vec.states, frozen)


def test_half_cheetah_rewards_and_observation():
    env = registry.make_env("cheetah_vel")
    assert env.observation_space.shape == (20,)   # qpos[1:] 8 + qvel 9 + torso COM 3
    env.set_task(1.3)
    env.reset(seed=0)
    action = np.linspace(-1.5, 1.5, 6)            # partly outside [-1, 1]: clipped
    com_before = env.torso_com()[0]
    obs, reward, done, _, info = env.step(action)
    velocity = env.data.subtree_linvel[env.torso_id][0]
    ctrl_cost = 0.05 * np.sum(np.clip(action, -1, 1) ** 2)
    assert reward == pytest.approx(-abs(velocity - 1.3) - ctrl_cost)
    assert not done
    np.testing.assert_allclose(obs[:8], env.data.qpos[1:])
    np.testing.assert_allclose(obs[17:], env.torso_com())
    # the reward's velocity is the torso subtree's COM velocity: compare with COM motion
    assert velocity == pytest.approx((env.torso_com()[0] - com_before) / 0.01, abs=0.05)
    direction = registry.make_env("cheetah_dir", oracle=True)
    assert direction.observation_space.shape == (21,)
    direction.set_task(-1.0)
    direction.reset(seed=0)
    obs, reward, _, _, _ = direction.step(action)
    velocity = direction.data.subtree_linvel[direction.torso_id][0]
    assert reward == pytest.approx(-velocity - ctrl_cost)
    assert obs[-1] == -1.0


def test_ant_rewards_termination_and_observation():
    env = registry.make_env("ant_vel")
    assert env.observation_space.shape == (125,)   # 15 + 14 + 84 + 9 + 3
    env.set_task(2.0)
    env.reset(seed=0)
    action = np.full(8, 0.5)
    obs, reward, done, _, _ = env.step(action)
    velocity = env.data.subtree_linvel[env.torso_id][0]
    contact = np.clip(env.data.cfrc_ext, -1, 1)
    expected = (-abs(velocity - 2.0) + 1.0 - 0.005 * np.sum(action ** 2)
                - 0.0005 * np.sum(contact ** 2) + 0.05)
    assert reward == pytest.approx(expected)
    assert not done
    np.testing.assert_allclose(obs[29:113], contact.ravel())
    # termination: torso height outside [0.2, 1.0]
    env.data.qpos[2] = 1.5   # above 1.0 (a torso pushed into the floor would bounce up)
    env.data.qvel[:] = 0.0
    _, _, done, _, _ = env.step(np.zeros(8))
    assert done
    ant_dir = registry.make_env("ant_dir")
    ant_dir.set_task(1.0)
    ant_dir.reset(seed=0)
    _, reward, _, _, _ = ant_dir.step(np.zeros(8))
    velocity = ant_dir.data.subtree_linvel[ant_dir.torso_id][0]
    contact = np.clip(ant_dir.data.cfrc_ext, -1, 1)
    assert reward == pytest.approx(velocity - 0.0005 * np.sum(contact ** 2) + 0.05)


def test_task_sampling_ranges():
    rng = np.random.RandomState(0)
    assert all(0 <= g <= 2 for g in registry.make_env("cheetah_vel").sample_tasks(50, rng))
    assert set(registry.make_env("cheetah_dir").sample_tasks(50, rng)) == {-1.0, 1.0}
    assert all(0 <= g <= 3 for g in registry.make_env("ant_vel").sample_tasks(50, rng))


def test_backward_fraction_shares_the_same_draws_out_differently():
    """The paper's forward/backward test goals (maml_rl 4d41869: draws from [0.1, 0.8], below
    0.4 backward) are the released ones' draws with 3/7 of the range backward: 20 of the ant's
    40 goals instead of 25; the cheetah's 22 either way (no draw falls between)."""
    ant, cheetah = registry.make_env("ant_dir"), registry.make_env("cheetah_dir")
    released = np.array(registry.sample_tasks(ant, 40, np.random.RandomState(2)))
    paper = np.array(registry.sample_tasks(ant, 40, np.random.RandomState(2), 3 / 7))
    assert (released < 0).sum() == 25 and (paper < 0).sum() == 20
    assert np.all(released[paper < 0] < 0)           # a lower threshold, the same draws
    old = np.random.RandomState(2).uniform(0.1, 0.8, 40) < 0.4
    assert np.array_equal(paper < 0, old)
    for fraction in (0.5, 3 / 7):
        tasks = registry.sample_tasks(cheetah, 40, np.random.RandomState(1), fraction)
        assert sum(t < 0 for t in tasks) == 22
    # the training mix of that code: [0, 2] draws below 0.4, a fifth of the tasks backward
    many = registry.sample_tasks(cheetah, 20000, np.random.RandomState(0), 0.2)
    assert abs(np.mean(np.array(many) < 0) - 0.2) < 0.01
    with pytest.raises(ValueError, match="forward/backward tasks only"):
        registry.sample_tasks(registry.make_env("cheetah_vel"), 3, np.random.RandomState(0), 0.2)
    assert registry.sample_tasks(registry.make_env("cheetah_vel"), 3,
                                 np.random.RandomState(0)) == \
        registry.make_env("cheetah_vel").sample_tasks(3, np.random.RandomState(0))


def test_unknown_env_name_is_a_clear_error():
    with pytest.raises(registry.UnknownEnvError, match="unknown environment 'cheetah'.*point"):
        registry.make_env("cheetah")
    assert registry.get_spec("HalfCheetahEnvRand").name == "cheetah_vel"


@pytest.mark.parametrize("name", ["cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir"])
def test_batched_mujoco_step_equals_single_steps(name):
    """SerialVectorEnv steps MuJoCo envs through ``batch_step`` (array maths over the batch);
    it must give exactly what stepping each env alone gives, including inactive envs."""
    from rl.envs.base import SerialVectorEnv
    tasks = registry.make_env(name).sample_tasks(4, np.random.RandomState(0))
    vec = SerialVectorEnv([registry.make_env(name, oracle=True) for _ in range(4)])
    singles = [registry.make_env(name, oracle=True) for _ in range(4)]
    vec.set_tasks(tasks)
    seeds = [11, 12, 13, 14]
    obs = vec.reset_with_seeds(seeds)
    for env, task, seed, row in zip(singles, tasks, seeds, obs):
        env.set_task(task)
        np.testing.assert_array_equal(env.reset(seed=seed)[0], row)
    rng = np.random.default_rng(0)
    active = np.array([True, True, False, True])
    for _ in range(20):
        actions = rng.standard_normal((4, vec.action_dim)) * 1.5
        obs, rewards, dones = vec.step(actions, active)
        for i in np.flatnonzero(active):
            s_obs, s_reward, s_done, _, _ = singles[i].step(actions[i])
            np.testing.assert_array_equal(obs[i], s_obs)
            assert rewards[i] == s_reward and dones[i] == s_done
    assert obs.shape[1] == vec.observation_dim


def test_cheetah_partial_forward_gives_the_full_forward_quantities():
    """The half-cheetah skips the full mj_forward after a step (kinematics, COM positions and
    velocities only): what the observation and reward read must equal a full forward pass."""
    import copy

    import mujoco
    env = registry.make_env("cheetah_vel")
    assert not env.full_forward
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(50):
        env.step(rng.standard_normal(6))
    reference = copy.copy(env.data)
    mujoco.mj_forward(env.model, reference)
    mujoco.mj_subtreeVel(env.model, reference)
    np.testing.assert_array_equal(reference.subtree_com, env.data.subtree_com)
    np.testing.assert_array_equal(reference.subtree_linvel, env.data.subtree_linvel)
    np.testing.assert_array_equal(reference.qpos, env.data.qpos)
