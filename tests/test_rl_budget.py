"""Sampling budgets as rllab's samplers (issue 15, part 1): rl.samplers.BudgetSampler.

maml_rl's BatchSampler (n_parallel=8, the released locomotion scripts) gives each task a
budget of fast_batch_size x max_path_length steps and completes the paths in flight;
its VectorizedSampler (n_parallel=1, the released point script) shares one budget across the
tasks, one path per task at a time, and drops the paths still running.
"""
import numpy as np
import pytest

from rl.envs.base import VectorTaskEnv, env_seeds
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


# ------------------------------------------- total scope: batched, same batches as lockstep
def lockstep_counts(task_lengths, horizon, steps):
    """The VectorizedSampler's rule for deterministic path lengths, round by round: every
    task steps its one environment, a finished path is counted and the next one starts in
    the next round, and the rounds stop once the counted paths hold ``steps`` steps."""
    length = [min(value, horizon) for value in task_lengths]
    t, paths, kept = [0] * len(length), [0] * len(length), [0] * len(length)
    while sum(kept) < steps:
        for k in range(len(length)):
            t[k] += 1
            if t[k] == length[k]:
                paths[k], kept[k], t[k] = paths[k] + 1, kept[k] + length[k], 0
    return paths, kept


class CountingPolicy:
    """A policy_fn wrapper that counts its calls."""

    def __init__(self, policy_fn):
        self.policy_fn, self.calls = policy_fn, 0

    def __call__(self, obs):
        self.calls += 1
        return self.policy_fn(obs)


@pytest.mark.parametrize("task_lengths, horizon, steps", [
    ([2, 10], 10, 80),             # the test above: 20 and 4 paths
    ([2, 10], 10, 25),             # reached mid-path of the slow task
    ([3, 7, 50], 10, 150),         # 50 > horizon: cut to 10
    ([4, 6, 9], 10, 61),           # reached in a round where two tasks finish
    ([5, 5, 5], 10, 60),           # equal lengths: 4 each
    ([20, 30], 10, 200),           # all paths cut by the horizon: first round suffices
    ([1, 9, 10, 13, 2], 12, 300),
])
@pytest.mark.parametrize("lanes", [None, 1, 3])
def test_total_budget_keeps_the_paths_of_lockstep_rounds(task_lengths, horizon, steps, lanes):
    """Fixed lengths: the batched sampler keeps exactly the paths of the round-by-round
    rule, however many environments per task run them (None: make_sampler's count, the
    first round's paths)."""
    k = len(task_lengths)
    first_round = -(-steps // (k * horizon))
    env = CountdownEnv(k * (lanes or first_round))
    sampler = BudgetSampler(env, k, horizon, Budget(steps, 1, "total"))
    counting = CountingPolicy(policy)
    episodes = sampler.sample(task_lengths, counting, seed=0)
    paths, kept = lockstep_counts(task_lengths, horizon, steps)
    np.testing.assert_array_equal(sampler.last_paths_per_task, paths)
    np.testing.assert_array_equal(episodes.mask.sum(axis=(1, 2)), kept)
    assert paths_end_properly(episodes, horizon)
    assert sampler.steps_taken >= sum(kept)
    if min(task_lengths) >= horizon and lanes is None:   # one round of full-length paths
        assert counting.calls == horizon and sampler.steps_taken == sum(kept)


class GeometricEnv(VectorTaskEnv):
    """Random path lengths: an env's path ends after Geometric(task) steps, drawn from its
    reset seed (so the sampler's seeds decide them). obs = [t, length]."""

    observation_dim, action_dim = 2, 1

    def __init__(self, num_envs):
        self.num_envs = num_envs
        self.p = np.full(num_envs, 0.5)
        self.t = np.zeros(num_envs, dtype=int)
        self.length = np.ones(num_envs, dtype=int)

    def set_tasks(self, tasks):
        self.p = np.asarray(tasks, dtype=float)

    def _draw(self, indices, seeds):
        for i, seed in zip(indices, seeds):
            self.length[i] = np.random.default_rng(int(seed)).geometric(self.p[i])
            self.t[i] = 0
        return np.stack([self.t, self.length], axis=1)[indices].astype(float)

    def reset(self, seed):
        return self._draw(np.arange(self.num_envs), env_seeds(seed, self.num_envs))

    def reset_envs(self, indices, seeds):
        return self._draw(np.asarray(indices, dtype=int), seeds)

    def step(self, actions, active):
        self.t[active] += 1
        obs = np.stack([self.t, self.length], axis=1).astype(float)
        return obs, np.ones(self.num_envs), self.t >= self.length


def lockstep_reference(tasks, horizon, steps, seed):
    """The former sampler's loop without the storage: one env per task, all stepped each
    round, a finished path reset at once, stop after the round where the finished paths
    hold ``steps`` steps. Returns (paths, steps) kept per task."""
    rng = np.random.default_rng(seed)
    k = len(tasks)
    env = GeometricEnv(k)
    env.set_tasks(tasks)
    env.reset(seed=int(rng.integers(2 ** 31)))
    t, paths, kept = np.zeros(k, dtype=int), np.zeros(k, dtype=int), np.zeros(k, dtype=int)
    while kept.sum() < steps:
        _, _, done = env.step(np.zeros((k, 1)), np.ones(k, dtype=bool))
        t += 1
        ended = np.flatnonzero(done | (t >= horizon))
        paths[ended] += 1
        kept[ended] += t[ended]
        t[ended] = 0
        env.reset_envs(ended, rng.integers(2 ** 31, size=ended.size))
    return paths, kept


@pytest.mark.parametrize("lanes", [6, 2])
def test_total_budget_has_the_distribution_of_lockstep_rounds(lanes):
    """Random path lengths (means 2, 5, 12.5; horizon 15 cuts the long ones): over 400
    batches, paths and steps kept per task and in all agree with the lockstep loop's within
    4 standard errors. 2 lanes: several rounds, lanes restarting within a round."""
    tasks, horizon, steps, batches = [0.5, 0.2, 0.08], 15, 3 * 6 * 15, 400
    sampler = BudgetSampler(GeometricEnv(3 * lanes), 3, horizon, Budget(steps, 1, "total"))
    new, ref = [], []
    for seed in range(batches):
        episodes = sampler.sample(tasks, policy, seed=seed)
        assert paths_end_properly_geometric(episodes, horizon)
        new.append(np.concatenate([sampler.last_paths_per_task,
                                   episodes.mask.sum(axis=(1, 2))]))
        ref.append(np.concatenate(lockstep_reference(tasks, horizon, steps, 10 ** 6 + seed)))
    new, ref = np.array(new, dtype=float), np.array(ref, dtype=float)
    new, ref = [np.column_stack([a, a[:, 3:].sum(axis=1)]) for a in (new, ref)]
    error = np.sqrt((new.var(axis=0) + ref.var(axis=0)) / batches)
    gap = np.abs(new.mean(axis=0) - ref.mean(axis=0))
    assert np.all(gap <= 4 * error + 1e-9), (new.mean(axis=0), ref.mean(axis=0), error)
    assert new[:, -1].min() >= steps and new[:, -1].max() < steps + 3 * horizon


def paths_end_properly_geometric(episodes, horizon):
    """Kept paths are whole: from t=0 to their drawn length (obs[1]) or the horizon."""
    lengths = episodes.mask.sum(axis=-1)
    for k, n in zip(*np.nonzero(episodes.episode_exists())):
        assert episodes.observations[k, n, 0, 0] == 0
        assert lengths[k, n] == min(episodes.observations[k, n, 0, 1], horizon)
    return True


def point_paths_are_whole(episodes, goals, horizon):
    """A kept point-robot path starts at the origin and runs to the horizon or to the step
    that reaches its goal (replayed from its last observation and action)."""
    from rl.envs.point import point_transition
    lengths = episodes.mask.sum(axis=-1).astype(int)
    for k, n in zip(*np.nonzero(episodes.episode_exists())):
        np.testing.assert_array_equal(episodes.observations[k, n, 0, :2], 0.0)
        last = lengths[k, n] - 1
        _, _, done = point_transition(episodes.observations[k, n, last, :2].astype(float),
                                      np.asarray(goals[k]), episodes.actions[k, n, last])
        assert lengths[k, n] == horizon or done
        if last:
            _, _, early = point_transition(episodes.observations[k, n, last - 1, :2].astype(
                float), np.asarray(goals[k]), episodes.actions[k, n, last - 1])
            assert not early
    return True


def test_total_budget_on_the_point_robot_needs_few_policy_calls():
    """The point configuration (20 tasks x 20 paths x 100 steps): the lockstep loop made at
    least 40,000 / 20 = 2,000 policy calls; an untrained policy's paths nearly all run to the
    horizon: one round of 100 calls, a second (rarely a third) when a few ended early. A
    goal-seeking policy (oracle observation) gives short paths of random lengths, five times
    as many, and several rounds with lanes restarting."""
    from rl.adaptation import PolicyAdapter
    from rl.envs.point import sample_point_goals
    from rl.policies import GaussianMLPPolicy
    k, n, horizon = 20, 20, 100
    goals = sample_point_goals(k, np.random.RandomState(0))
    sampler, env = make_sampler("point", k, n, horizon, "total")
    adapter = PolicyAdapter(GaussianMLPPolicy(2, 2, (100, 100), seed=0), 0.5)
    counting = CountingPolicy(adapter.sampling_policy(None))
    episodes = sampler.sample(goals, counting, seed=0)
    kept = episodes.mask.sum()
    assert k * n * horizon <= kept < k * n * horizon + k * horizon
    assert counting.calls <= 500 and point_paths_are_whole(episodes, goals, horizon)

    sampler, env = make_sampler("point", k, n, horizon, "total", oracle=True)

    def seek(obs):   # towards the goal at full speed, noise of std 0.3 (0.03 per step)
        return np.clip(10 * (obs[..., 2:] - obs[..., :2]), -1, 1), np.full(obs.shape[:2] + (2,),
                                                                           np.log(0.3))

    counting = CountingPolicy(seek)
    episodes = sampler.sample(goals, counting, seed=1)
    counts = sampler.last_paths_per_task
    assert counts.max() > 2 * n and k * n * horizon <= episodes.mask.sum()
    assert 100 < counting.calls <= 500 and point_paths_are_whole(episodes, goals, horizon)


def test_make_sampler_modes_and_bad_input():
    sampler, env = make_sampler("point", 2, 3, 5, "fixed")
    assert isinstance(sampler, BatchSampler) and env.num_envs == 6
    sampler, env = make_sampler("point", 2, 3, 5, "per_task", lanes=4)
    assert isinstance(sampler, BudgetSampler) and env.num_envs == 8
    assert sampler.budget == Budget(15, 4, "per_task")
    sampler, env = make_sampler("point", 2, 3, 5, "total", lanes=4)
    # total: one environment per path of the first round (3 per task), lanes not used
    assert env.num_envs == 6 and sampler.budget == Budget(30, 1, "total")
    with pytest.raises(ValueError, match="multiple of 2 tasks"):
        BudgetSampler(CountdownEnv(3), 2, 5, Budget(30, 1, "total"))
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
