"""The exported SavedModel reproduces the policy and the training code's inner step."""
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from rl.adaptation import PolicyAdapter, SampleBatch
from rl.export import export_policy
from rl.policies import GaussianMLPPolicy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_exported_policy_acts_and_adapts_like_the_trainer(tmp_path):
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(8, 8), seed=0)
    rng = np.random.default_rng(0)
    for name, variable in policy.named_variables():   # no ReLU kink at zero biases
        if name.endswith("bias"):
            variable.assign(rng.uniform(-0.3, 0.3, variable.shape).astype("float32"))
    loaded = tf.saved_model.load(export_policy(policy, str(tmp_path / "policy"), fast_lr=0.3))
    obs, query = (rng.normal(size=(n, 3)).astype("float32") for n in (12, 5))
    actions = rng.normal(size=(12, 2)).astype("float32")
    advantages = rng.normal(size=12).astype("float32")

    acted = loaded.signatures["act"](observations=tf.constant(query))
    mean, log_std = policy.forward(query)
    np.testing.assert_allclose(acted["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acted["log_std"], log_std)

    adapted = loaded.signatures["adapt_and_act"](
        observations=tf.constant(obs), actions=tf.constant(actions),
        advantages=tf.constant(advantages), query_observations=tf.constant(query))
    batch = SampleBatch(*(tf.constant(x[None]) for x in (obs, actions, advantages,
                                                         np.ones(12, "float32"))))
    params = PolicyAdapter(policy, 0.3).adapted_params(policy.get_flat(), (batch,))
    expected_mean, expected_log_std = policy.forward(query[None], params=params)
    np.testing.assert_allclose(adapted["mean"], expected_mean[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adapted["log_std"], expected_log_std[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(adapted["mean"], acted["mean"], atol=1e-4)   # the step did act
    assert float(loaded.fast_lr.numpy()) == np.float32(0.3)


def test_export_from_the_command_line(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = tmp_path / "exported"
    result = subprocess.run(
        [sys.executable, "-m", "rl.main", "--env_name=cheetah_dir", "--mode=export",
         "--test_init=random", "--hidden_sizes=16", f"--logdir={tmp_path}",
         f"--export_dir={out}"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = tf.saved_model.load(str(out))
    acted = loaded.signatures["act"](observations=tf.zeros((4, 20)))   # rllab's 20-dim obs
    assert acted["mean"].shape == (4, 6) and acted["log_std"].shape == (4, 6)
    np.testing.assert_allclose(acted["log_std"], 0.0)                  # init std 1.0
    assert float(loaded.fast_lr.numpy()) == np.float32(0.1)           # locomotion default
