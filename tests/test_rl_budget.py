"""Sampling budgets as rllab's samplers (issue 15, part 1): rl.samplers.BudgetSampler.

maml_rl's BatchSampler (n_parallel=8, the released locomotion scripts) gives each task a
budget of fast_batch_size x max_path_length steps and completes the paths in flight;
its VectorizedSampler (n_parallel=1, the released point script) shares one budget across the
tasks, one path per task at a time, and drops the paths still running.
"""
import numpy as np
import pytest

from rl.envs.base import VectorTaskEnv
from rl.episodes import compute_advantages
from rl.samplers import BatchSampler, Budget, BudgetSampler, make_sampler


class CountdownEnv(VectorTaskEnv):
    """Each env's task is its episode length: done after ``task`` steps. obs = [t, task]."""

    observation_dim, action_dim = 2, 1

    def __init__(self, num_envs):
        self.num_envs = num_envs
        self.lengths = np.ones(num_envs, dtype=int)
        self.t = np.zeros(num_envs, dtype=int)
        self.resets = 0

    def _obs(self):
        return np.stack([self.t, self.lengths], axis=1).astype(float)

    def set_tasks(self, tasks):
        self.lengths = np.asarray(tasks, dtype=int)

    def reset(self, seed):
        self.t[:] = 0
        return self._obs()

    def reset_envs(self, indices, seeds):
        self.resets += len(indices)
        self.t[indices] = 0
        return self._obs()[indices]

    def step(self, actions, active):
        self.t[active] += 1
        return self._obs(), np.ones(self.num_envs), self.t >= self.lengths


def policy(obs):
    return np.zeros(obs.shape[:2] + (1,)), np.zeros(obs.shape[:2] + (1,))


def paths_end_properly(episodes, horizon):
    """Every kept path is whole: it starts at t=0 and ends at its task's length or the
    horizon (no truncated in-flight path)."""
    lengths = episodes.mask.sum(axis=-1)
    exists = episodes.episode_exists()
    for k, n in zip(*np.nonzero(exists)):
        assert episodes.observations[k, n, 0, 0] == 0
        task_length = episodes.observations[k, n, 0, 1]
        assert lengths[k, n] == min(task_length, horizon)
    return True


def test_per_task_budget_completes_paths_in_flight_like_eight_workers():
    horizon, asked, lanes = 10, 20, 8
    env = CountdownEnv(3 * lanes)
    sampler = BudgetSampler(env, 3, horizon, Budget(asked * horizon, lanes, "per_task"))
    episodes = sampler.sample([100, 100, 100], policy, seed=0)   # never done: full paths
    # rounds of 8 paths of 10 steps until 200 steps are complete: 8 + 8 + 8 = 24
    np.testing.assert_array_equal(sampler.last_paths_per_task, [24, 24, 24])
    assert episodes.mask.shape == (3, 24, horizon)
    assert episodes.mask.sum() == 3 * 24 * horizon
    assert paths_end_properly(episodes, horizon)
    assert sampler.steps_taken == 3 * 24 * horizon


def test_per_task_budget_gives_short_episodes_more_paths():
    horizon, asked, lanes = 10, 4, 2
    env = CountdownEnv(3 * lanes)
    sampler = BudgetSampler(env, 3, horizon, Budget(asked * horizon, lanes, "per_task"))
    episodes = sampler.sample([3, 7, 50], policy, seed=0)
    counts = sampler.last_paths_per_task
    steps = episodes.mask.sum(axis=(1, 2))
    # length 3: 14 paths reach 42 >= 40 (2 lanes in lockstep); 7: 6 paths = 42; 10: 4 paths
    np.testing.assert_array_equal(counts, [14, 6, 4])
    assert np.all(steps >= asked * horizon) and np.all(steps < asked * horizon + lanes * horizon)
    assert not episodes.episode_exists()[2, 4:].any()   # padded to the largest count
    assert paths_end_properly(episodes, horizon)
    # the padding does not enter the averages or the flat (loss) layout
    returns = episodes.average_return_per_task()
    np.testing.assert_allclose(returns, [3.0, 7.0, 10.0])
    compute_advantages(episodes, 0.99, 1.0)
    flat_mask = episodes.flat("mask")
    assert flat_mask.shape == (3, 50) and flat_mask.sum() == episodes.mask.sum()
    assert np.all(flat_mask[0, :42] == 1) and np.all(flat_mask[0, 42:] == 0)
    np.testing.assert_allclose(np.abs(episodes.flat("advantages")).sum(),
                               np.abs(episodes.advantages).sum())


def test_total_budget_is_shared_and_drops_running_paths():
    horizon, asked = 10, 4
    env = CountdownEnv(2)
    sampler = BudgetSampler(env, 2, horizon, Budget(2 * asked * horizon, 1, "total"))
    episodes = sampler.sample([2, 10], policy, seed=0)
    counts = sampler.last_paths_per_task
    # both tasks step in lockstep until 80 completed steps: t=40 -> 20 x 2 + 4 x 10 = 80
    np.testing.assert_array_equal(counts, [20, 4])
    assert episodes.mask.sum() == 80
    assert paths_end_properly(episodes, horizon)
    # a shorter budget stops mid-path for the slow task: its running path is dropped
    # (t=16: 8 x 2 + 1 x 10 = 26 >= 25, the slow task's second path is 6 steps in)
    sampler = BudgetSampler(env, 2, horizon, Budget(25, 1, "total"))
    episodes = sampler.sample([2, 10], policy, seed=0)
    np.testing.assert_array_equal(sampler.last_paths_per_task, [8, 1])
    assert episodes.mask.sum() == 26 and paths_end_properly(episodes, horizon)


def test_make_sampler_modes_and_bad_input():
    sampler, env = make_sampler("point", 2, 3, 5, "fixed")
    assert isinstance(sampler, BatchSampler) and env.num_envs == 6
    sampler, env = make_sampler("point", 2, 3, 5, "per_task", lanes=4)
    assert isinstance(sampler, BudgetSampler) and env.num_envs == 8
    assert sampler.budget == Budget(15, 4, "per_task")
    sampler, env = make_sampler("point", 2, 3, 5, "total", lanes=4)
    assert env.num_envs == 2 and sampler.budget == Budget(30, 1, "total")
    with pytest.raises(ValueError, match="sampling mode"):
        make_sampler("point", 2, 3, 5, "paths")
    with pytest.raises(ValueError, match="lanes"):
        Budget(10, 0)


def test_budget_sampler_on_mujoco_with_worker_processes_matches_in_process():
    """ProcessVectorEnv.reset_envs routes single resets to the right worker: the same
    seed gives the same batch as in-process stepping."""
    tasks = [1.0, -1.0]

    def run(workers):
        sampler, env = make_sampler("cheetah_dir", 2, 2, 6, "per_task", 2,
                                    num_workers=workers)
        try:
            rng = np.random.default_rng(0)
            weights = rng.normal(size=(20, 6)) * 0.1
            return sampler.sample(
                tasks, lambda obs: (obs @ weights, np.zeros(obs.shape[:2] + (6,))), seed=3)
        finally:
            env.close()

    serial, pooled = run(0), run(2)
    assert serial.mask.shape == (2, 2, 6)
    np.testing.assert_array_equal(serial.observations, pooled.observations)
    np.testing.assert_array_equal(serial.rewards, pooled.rewards)


def test_released_sampling_defaults_per_task():
    from flags.rl import task_defaults
    assert task_defaults("point")["sampling"] == "total"
    assert task_defaults("cheetah_dir")["sampling"] == "per_task"
    assert task_defaults("ant_vel")["sampling_lanes"] == 8
    # the FD study's decision (docs/RL.md): exact products for the point robot
    assert task_defaults("point")["hvp"] == "exact"
    assert task_defaults("cheetah_vel")["hvp"] == "fd"


def test_test_protocol_samples_under_the_budget_when_asked():
    """The released test scripts sample a budget of steps per goal (n_parallel=4); with
    paths that run to the horizon that is exactly the fixed count (short paths: tests
    above), and the results record the count per goal and step."""
    from rl.config import EvalConfig
    from rl.evaluate import evaluate
    from rl.policies import GaussianMLPPolicy
    policy = GaussianMLPPolicy(2, 2, (8,), init_std=0.05, seed=0)
    policy.log_std.assign(np.log([0.05, 0.05]).astype(np.float32))
    base = dict(env_name="point", num_tasks=3, episodes_per_task=4, max_path_length=10,
                num_steps=0, fast_lr=0.5, goal_seed=1)
    fixed = evaluate(policy, EvalConfig(**base, sampling="fixed"))
    budget = evaluate(policy, EvalConfig(**base, sampling="per_task"))
    assert fixed["paths_per_task"].shape == (1, 3)
    np.testing.assert_array_equal(fixed["paths_per_task"], 4)
    np.testing.assert_array_equal(budget["paths_per_task"], 4)   # 4 lanes x 10 steps = 40
    assert budget["config"]["sampling"] == "per_task"
