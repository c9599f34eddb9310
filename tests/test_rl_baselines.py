"""The baselines as the released scripts trained them (docs/RL.md, "Baselines as released").

Cheap checks: the presets resolve to the released configurations; the point robot's
pretrained step is one Adam step on the policy-gradient surrogate (checked against Adam
computed by hand); --fixed_goals keeps the goals across iterations; the random baseline's
per-goal initialisations differ by goal and repeat for a goal.
"""
from __future__ import annotations

import maml_tf  # noqa: F401  (before TensorFlow)

import numpy as np
import pytest
import tensorflow as tf

from flags import experiments
from rl.adaptation import to_sample_batch
from rl.episodes import Episodes, compute_advantages
from rl.policies import GaussianMLPPolicy
from rl.pretrain import AdamPretrainer


def test_presets_resolve_to_the_released_baselines():
    flags = lambda name: experiments.resolved_flags(name, logroot="L")
    point = flags("rl_point_pretrained")
    assert point["use_maml"] is False and point["pretrain_optimizer"] == "adam"
    assert point["logdir"] == "L/rl/point_pretrained" and point["n_itr"] == 100
    for env, goals in (("cheetah_vel", 1), ("cheetah_dir", 1), ("ant_vel", 8), ("ant_dir", 8)):
        pre = flags(f"rl_{env}_pretrained")
        assert pre["use_maml"] is False and pre["fixed_goals"] is True
        assert "pretrain_optimizer" not in pre                     # plain TRPO
        assert pre["meta_batch_size"] == goals                     # one goal per worker
        assert 100 <= pre["meta_batch_size"] * pre["fast_batch_size"] <= 104
        oracle = flags(f"rl_{env}_oracle")
        assert oracle["oracle"] is True and oracle["use_maml"] is False
        assert oracle["meta_batch_size"] * oracle["fast_batch_size"] == 100
        assert "fixed_goals" not in oracle                          # a fresh goal per path
        # rllab's plain TRPO: one baseline fit and one centring over the whole batch
        assert oracle["advantage_scope"] == "batch"
        assert pre.get("advantage_scope", "task") == ("batch" if goals > 1 else "task")
    point_oracle = flags("rl_point_oracle")
    assert point_oracle["oracle"] is True and point_oracle["sampling"] == "total"
    assert point_oracle["meta_batch_size"] * point_oracle["fast_batch_size"] * 100 == 1000
    assert point_oracle["advantage_scope"] == "batch"
    assert "advantage_scope" not in point and "advantage_scope" not in flags("rl_point")
    former = flags("rl_point_pretrained_multitask")
    assert former["use_maml"] is False and "pretrain_optimizer" not in former
    assert former["logdir"] == "L/rl/point_pretrained_multitask"
    defaults = {env: experiments.task_defaults(env)["test_random_init"]
                for env in experiments.RL_ENVS}
    assert defaults == {"point": "shared", "cheetah_vel": "shared", "cheetah_dir": "per_goal",
                        "ant_vel": "shared", "ant_dir": "per_goal"}


def _tiny_batch(seed=0, k=2, n=3, horizon=4, obs_dim=2, act_dim=2):
    rng = np.random.default_rng(seed)
    mask = np.ones((k, n, horizon), np.float32)
    mask[0, 0, 3:] = 0.0                             # one path ends early
    episodes = Episodes(rng.normal(size=(k, n, horizon, obs_dim)).astype(np.float32),
                        rng.normal(size=(k, n, horizon, act_dim)).astype(np.float32),
                        rng.normal(size=(k, n, horizon)) * mask, mask)
    return compute_advantages(episodes, 0.99, 1.0)


def test_point_pretrained_step_is_adam_on_the_surrogate():
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(5,), seed=3, dtype="float64")
    learner = AdamPretrainer(policy, learning_rate=1e-3)
    theta = policy.get_flat().numpy()
    m = v = np.zeros_like(theta)
    for step in (1, 2):
        episodes = _tiny_batch(seed=step)
        batch = to_sample_batch(episodes, tf.float64)
        flat = tf.Variable(policy.get_flat())
        with tf.GradientTape() as tape:   # the surrogate, by hand: per task, then task mean
            params = policy.unflatten(flat)
            tiled = {name: tf.stack([p, p]) for name, p in params.items()}
            log_prob = policy(batch.obs, params=tiled).log_prob(batch.actions)
            per_task = -tf.reduce_sum(log_prob * batch.advantages * batch.mask, 1) \
                / tf.reduce_sum(batch.mask, 1)
            loss = tf.reduce_mean(per_task)
        grad = tape.gradient(loss, flat).numpy()
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        lr_t = 1e-3 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        theta = theta - lr_t * m / (np.sqrt(v) + 1e-8)
        info = learner.meta_step([], episodes)
        np.testing.assert_allclose(policy.get_flat().numpy(), theta, rtol=1e-10, atol=1e-12)
        assert info["loss_before"] == pytest.approx(float(loss), rel=1e-10)
        assert info["accepted"] and info["mean_kl"] > 0
    assert int(learner.t.numpy()) == 2
    # the first Adam step moves every parameter with a gradient by about lr
    assert np.abs(theta - GaussianMLPPolicy(2, 2, (5,), seed=3, dtype="float64")
                  .get_flat().numpy()).max() < 2.5e-3


def test_adam_needs_the_pretrained_baseline():
    from absl import flags as absl_flags
    from flags import rl as rl_flags  # noqa: F401  (defines the flags)
    validator = next(v for v in absl_flags.FLAGS._flags()["pretrain_optimizer"].validators
                     if "use_maml" in v.get_flags_names())
    assert not validator.checker({"pretrain_optimizer": "adam", "use_maml": True})
    assert validator.checker({"pretrain_optimizer": "adam", "use_maml": False})
    assert validator.checker({"pretrain_optimizer": "trpo", "use_maml": True})
    assert "--use_maml=False" in validator.message


def _tiny_trpo_config(logdir, **settings):
    from rl.config import PolicyConfig, TrainConfig
    from rl.maml_trpo import TRPOConfig
    return TrainConfig(logdir=str(logdir), policy=PolicyConfig(hidden_sizes=(4,)),
                       trpo=TRPOConfig(use_maml=False, hvp="exact", cg_iters=2), **settings)


def _tasks_sampled(cfg) -> list:
    """Trains ``cfg`` and returns the tasks of every batch the trainer sampled."""
    from rl.trainer import Trainer
    trainer = Trainer(cfg)
    seen = []
    sample = trainer.sampler.sample
    trainer.sampler.sample = lambda tasks, fn, seed: seen.append(
        np.array(tasks)) or sample(tasks, fn, seed)
    try:
        trainer.train()
    finally:
        trainer.close()
    return seen


def test_fixed_goals_keep_one_goal_across_iterations(tmp_path):
    def goals_seen(fixed, logdir):
        return _tasks_sampled(_tiny_trpo_config(
            logdir, env_name="point", meta_batch_size=1, fast_batch_size=2, max_path_length=5,
            n_itr=2, fixed_goals=fixed))

    fixed = goals_seen(True, tmp_path / "fixed")
    assert len(fixed) == 2 and np.array_equal(fixed[0], fixed[1])
    fresh = goals_seen(False, tmp_path / "fresh")
    assert not np.array_equal(fresh[0], fresh[1])    # the flag is what keeps them


def test_backward_fraction_sets_the_training_mix_and_is_kept_on_resume(tmp_path):
    """--backward_fraction shares the same goal draws out differently (fewer backward tasks
    at 0.2 than at the released 0.5, every one of them backward at 0.5 too), is recorded,
    and a resume with another value is refused (it defines the task distribution)."""
    import json

    from maml_tf import run_folder
    from rl.trainer import Trainer

    def cfg(fraction, logdir):
        return _tiny_trpo_config(logdir, env_name="cheetah_dir", meta_batch_size=20,
                                 fast_batch_size=1, max_path_length=2, n_itr=1,
                                 backward_fraction=fraction)

    def tasks_seen(fraction, logdir):
        return _tasks_sampled(cfg(fraction, logdir))[0]

    few, half = tasks_seen(0.2, tmp_path / "few"), tasks_seen(0.5, tmp_path / "half")
    assert 0 < (few < 0).sum() < (half < 0).sum() and np.all(half[few < 0] < 0)
    with open(tmp_path / "few" / run_folder.RECORD_NAME) as handle:
        assert json.load(handle)["resume_settings"]["backward_fraction"] == 0.2
    with pytest.raises(run_folder.RunFolderError, match="--backward_fraction was 0.2, now 0.5"):
        Trainer(cfg(0.5, tmp_path / "few"))


def test_random_baseline_initialisation_per_goal():
    from rl.evaluate import per_goal_initialisations
    make = lambda seed: GaussianMLPPolicy(3, 2, hidden_sizes=(4,), seed=seed)
    first = per_goal_initialisations(make, 3)
    again = per_goal_initialisations(make, 3)
    kernel = first["hidden_0/kernel"].numpy()
    assert kernel.shape == (3, 3, 4)
    assert not np.allclose(kernel[0], kernel[1]) and not np.allclose(kernel[1], kernel[2])
    np.testing.assert_array_equal(kernel, again["hidden_0/kernel"].numpy())
    np.testing.assert_array_equal(kernel[2], make(2).meta_parameters()["hidden_0/kernel"])


def test_batch_scope_fits_one_baseline_over_every_task():
    """One path per goal (the oracles): per-task processing centres each path to mean 0 and
    keeps nothing of which path did better; merged, the batch is rllab's one list of paths:
    the same advantages as one task holding every path, and a better path gets a higher
    mean advantage."""
    from rl.episodes import merge_tasks

    rng = np.random.default_rng(3)
    k, horizon = 6, 8
    obs = rng.normal(size=(k, 1, horizon, 2)).astype(np.float32)
    quality = np.arange(k, dtype=np.float64)            # task i's path earns i per step
    rewards = np.repeat(quality[:, None, None], horizon, axis=2) + 0.01 * rng.normal(
        size=(k, 1, horizon))
    mask = np.ones((k, 1, horizon))
    actions = rng.normal(size=(k, 1, horizon, 2))
    per_task = compute_advantages(Episodes(obs, actions, rewards, mask), 0.99, 1.0)
    np.testing.assert_allclose(per_task.advantages.mean(axis=(1, 2)), 0.0, atol=1e-6)
    merged = merge_tasks(Episodes(obs, actions, rewards, mask))
    assert merged.mask.shape == (1, k, horizon) and merged.observations.shape == (1, k, horizon, 2)
    np.testing.assert_array_equal(merged.observations[0, 4], obs[4, 0])
    pooled = compute_advantages(merged, 0.99, 1.0)
    one_task = compute_advantages(Episodes(obs.reshape(1, k, horizon, 2), actions.reshape(
        1, k, horizon, 2), rewards.reshape(1, k, horizon), mask.reshape(1, k, horizon)), 0.99, 1.0)
    np.testing.assert_allclose(pooled.advantages, one_task.advantages)
    path_means = pooled.advantages[0].mean(axis=1)
    assert np.all(np.diff(path_means) > 0)             # the better the path, the higher
    np.testing.assert_allclose(pooled.advantages.mean(), 0.0, atol=1e-6)


def test_batch_scope_needs_plain_trpo(tmp_path):
    """--advantage_scope=batch would pool MAML's per-task inner-step batches: refused before
    anything is written; with use_maml=False a run trains and records the scope."""
    import json

    from rl.config import PolicyConfig, TrainConfig
    from rl.maml_trpo import TRPOConfig
    from rl.trainer import Trainer

    def config(use_maml, logdir):
        return TrainConfig(env_name="point", oracle=True, meta_batch_size=3, fast_batch_size=1,
                           max_path_length=5, n_itr=1, logdir=str(logdir),
                           advantage_scope="batch", policy=PolicyConfig(hidden_sizes=(4,)),
                           trpo=TRPOConfig(use_maml=use_maml, hvp="exact", cg_iters=2))

    with pytest.raises(ValueError, match="advantage_scope=batch"):
        Trainer(config(True, tmp_path / "maml"))
    assert not (tmp_path / "maml" / "config.json").exists()      # nothing but its lock
    trainer = Trainer(config(False, tmp_path / "oracle"))
    seen = []
    meta_step = trainer.learner.meta_step
    trainer.learner.meta_step = lambda train, valid: seen.append(valid) or meta_step(train, valid)
    try:
        trainer.train()
    finally:
        trainer.close()
    assert seen[0].mask.shape[:2] == (1, 3)             # the three goals' paths, one task
    record = json.loads((tmp_path / "oracle" / "config.json").read_text())
    assert record["resume_settings"]["advantage_scope"] == "batch"
