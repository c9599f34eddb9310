"""Policy forward and gradients; the batched sampler and its worker pool."""
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from rl.envs import registry
from rl.envs.base import SerialVectorEnv
from rl.envs.workers import ProcessVectorEnv, WorkerError
from maml_tf.core import tile_params
from rl.policies import GaussianMLPPolicy
from rl.samplers import BatchSampler


def test_functional_forward_matches_keras_and_batches_over_tasks():
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(7, 5), seed=0)
    assert policy.num_params == 3 * 7 + 7 + 7 * 5 + 5 + 5 * 2 + 2 + 2
    obs = tf.random.normal((4, 3), seed=1)
    mean, log_std = policy.forward(obs)
    np.testing.assert_allclose(log_std.numpy(), 0.0)        # std starts at 1.0
    dist = policy(obs)
    np.testing.assert_allclose(dist.mean().numpy(), mean.numpy(), rtol=1e-6)
    # two tasks with different parameters evaluated in one call
    params = tile_params(policy.meta_parameters(), 2)
    params = {name: value * tf.reshape(tf.constant([1.0, 0.5]), [2] + [1] * (value.shape.rank - 1))
              for name, value in params.items()}
    batched_mean, _ = policy.forward(tf.stack([obs, obs]), params=params)
    for k, scale in enumerate([1.0, 0.5]):
        single = {name: value * scale for name, value in policy.meta_parameters().items()}
        np.testing.assert_allclose(batched_mean[k].numpy(),
                                   policy.forward(obs, params=single)[0].numpy(), rtol=1e-5)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_functional_forward_equals_the_keras_layers(nonlinearity):
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(7, 5), seed=0, nonlinearity=nonlinearity)
    obs = tf.random.normal((4, 3), seed=1)
    x = obs
    for layer in policy.hidden_layers:
        x = layer(x)                                    # Keras applies its own activation
    np.testing.assert_allclose(policy.forward(obs)[0].numpy(),
                               policy.mean_layer(x).numpy(), rtol=1e-5, atol=1e-6)
    if nonlinearity == "tanh":   # really a different network from the ReLU one
        relu = GaussianMLPPolicy(3, 2, hidden_sizes=(7, 5), seed=0)
        assert not np.allclose(relu.forward(obs)[0], policy.forward(obs)[0])
    with pytest.raises(ValueError, match="nonlinearity"):
        GaussianMLPPolicy(3, 2, nonlinearity="sigmoid")


@pytest.mark.parametrize("nonlinearity,dtype", [("relu", "float32"), ("tanh", "float32"),
                                                ("relu", "float64")])
def test_numpy_forward_equals_the_traced_forward(nonlinearity, dtype):
    """The samplers' policy (``forward_numpy``) is the network of ``forward`` to rounding,
    with the policy's own parameters and with per-task ones (task k's rows through task k's
    weights), and its log-std broadcast to the mean's shape."""
    from rl.adaptation import PolicyAdapter
    policy = GaussianMLPPolicy(6, 3, hidden_sizes=(9, 5), seed=0, nonlinearity=nonlinearity,
                               dtype=dtype)
    obs = np.random.default_rng(0).standard_normal((4, 5, 6))
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    per_task = {name: value * tf.reshape(tf.constant([1.0, 0.5, -0.7, 2.0], dtype=dtype),
                                         [4] + [1] * value.shape.rank)
                for name, value in policy.meta_parameters().items()}
    for params in (None, per_task):
        traced_mean, traced_log_std = policy.forward(tf.constant(obs, dtype=dtype),
                                                     params=params)
        mean, log_std = PolicyAdapter(policy, 0.1).sampling_policy(params)(obs)
        assert mean.dtype == np.dtype(dtype) and mean.shape == (4, 5, 3)
        assert log_std.shape == mean.shape
        np.testing.assert_allclose(mean, traced_mean.numpy(), rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(log_std, traced_log_std.numpy(), rtol=tolerance)
    # per-task rows really went through their own task's weights
    assert not np.allclose(policy.forward_numpy(obs, policy.numpy_parameters(per_task))[0],
                           policy.forward_numpy(obs, policy.numpy_parameters())[0])


def test_gradients_reach_keras_variables_through_meta_parameters():
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(4,), seed=0)
    with tf.GradientTape() as tape:
        params = policy.meta_parameters()
        log_prob = policy(tf.ones((3, 2)), params=params).log_prob(tf.ones((3, 2)))
        loss = -tf.reduce_mean(log_prob)
    grads = tape.gradient(loss, [v for _, v in policy.named_variables()])
    assert all(g is not None for g in grads)
    assert float(tf.linalg.global_norm(grads)) > 0


def test_set_flat_roundtrip():
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(4,), seed=0)
    flat = np.arange(policy.num_params, dtype=np.float32) / 100.0
    policy.set_flat(flat)
    np.testing.assert_allclose(policy.get_flat().numpy(), flat)
    assert float(policy.log_std.numpy()[-1]) == pytest.approx(flat[-1])


def test_sampler_shapes_masks_and_one_policy_call_per_step():
    env = registry.make_vector_env("point", 3 * 2)
    sampler = BatchSampler(env, num_tasks=3, episodes_per_task=2, horizon=12)
    goals = [np.array([0.3, 0.3]), np.array([-0.5, 0.5]), np.array([0.0, -0.2])]
    calls = []

    def towards_goal(obs):   # deterministic-ish: huge mean toward the goal, tiny std
        calls.append(obs.shape)
        direction = np.stack([np.broadcast_to(g, obs.shape[1:]) for g in goals]) - obs
        return 1e3 * direction, np.full(obs.shape, -20.0)

    episodes = sampler.sample(goals, towards_goal, seed=0)
    assert episodes.observations.shape == (3, 2, 12, 2)
    assert episodes.actions.shape == (3, 2, 12, 2) and episodes.rewards.shape == (3, 2, 12)
    assert all(shape == (3, 2, 2) for shape in calls)          # one call for all envs
    # goal (0.3, 0.3) is reached after 3 steps of 0.1: done, the rest is masked
    np.testing.assert_array_equal(episodes.mask[0, 0], [1, 1, 1] + [0] * 9)
    np.testing.assert_allclose(episodes.rewards[0, 0, 2], 0.0, atol=1e-9)
    assert np.all(episodes.rewards[0, 0, 3:] == 0)
    # the last goal needs 2 steps, the middle one 5: fewer calls than the horizon
    assert len(calls) == 5
    np.testing.assert_allclose(episodes.episode_returns()[0, 0],
                               -(np.hypot(0.2, 0.2) + np.hypot(0.1, 0.1)))


@pytest.fixture(scope="module")
def cheetah_pool():
    """One pool of 2 spawned workers (2 half-cheetahs each) for the tests below: spawning is
    the expensive part. The error test kills a worker, so it runs last."""
    env = ProcessVectorEnv("cheetah_vel", 4, num_workers=2)
    yield env
    env.close()


def test_worker_pool_matches_in_process_envs(cheetah_pool):
    tasks = [0.5, 1.5]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(5, 4, 6))
    outputs = []
    serial = SerialVectorEnv([registry.make_env("cheetah_vel") for _ in range(4)])
    for env in (serial, cheetah_pool):
        env.set_tasks([t for t in tasks for _ in range(2)])
        trace = [env.reset(seed=123)]
        for step in range(5):
            trace.append(env.step(actions[step], np.ones(4, dtype=bool)))
        outputs.append(trace)
    serial.close()
    serial, pooled = outputs
    np.testing.assert_array_equal(pooled[0], serial[0])
    assert pooled[0].shape == (4, 20)
    for step in range(1, 6):
        for got, want in zip(pooled[step], serial[step]):
            np.testing.assert_array_equal(got, want)
    assert np.all(np.isfinite(pooled[-1][1])) and not pooled[-1][2].any()


def test_workers_leave_the_parents_process_group(cheetah_pool):
    """A signal to the trainer's group (Ctrl-C, a driver's SIGTERM) must not kill them."""
    groups = {os.getpgid(process.pid) for process in cheetah_pool.processes}
    assert os.getpgid(0) not in groups and len(groups) == 2


def test_worker_errors_and_death_are_reported_not_hangs(cheetah_pool):
    """An unknown command, a command that raises, and a dead worker each raise WorkerError
    (the parent used to wait forever); the first two leave the worker serving."""
    env = cheetah_pool
    env._send(0, ("jump", None))
    with pytest.raises(WorkerError, match="unknown command 'jump'"):
        env._receive(0)
    env._send(0, ("reset_envs", (np.array([5]), np.array([0]))))   # it has envs 0, 1
    with pytest.raises(WorkerError, match="reset_envs: IndexError"):
        env._receive(0)
    env.set_tasks([0.5] * 4)
    assert env.reset(seed=0).shape == (4, 20)                       # both still serve
    env.processes[1].kill()
    env.processes[1].join(timeout=10)
    started = time.monotonic()
    with pytest.raises(WorkerError, match="worker 1 .* died"):
        env.step(np.zeros((4, 6)), np.ones(4, dtype=bool))
    assert time.monotonic() - started < 5.0
    with pytest.raises(WorkerError, match="unusable: environment worker 1"):
        env.reset(seed=0)          # worker 0 may hold an unread answer: refuse, not misread
