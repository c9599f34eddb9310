"""The point robot's pretrained baseline as the released script trained it: one Adam step.

Why a separate optimizer: maml_rl's ``MAMLNPO.__init__`` (sandbox/rocky/tf/algos/maml_npo.py,
lines 31-36) replaces the TRPO optimizer by ``FirstOrderOptimizer(batch_size=None,
max_epochs=1)`` when ``use_maml=False``, whose defaults are ``tf.train.AdamOptimizer`` with
learning rate 1e-3 (first_order_optimizer.py, lines 47-50). With ``batch_size=None`` the one
epoch is one minibatch holding the whole batch, so each iteration is exactly one Adam step on
the pre-update policy-gradient surrogate, the mean over tasks of -mean_t log pi(a|s) A
(maml_npo.py, line 127: ``all_surr_objs[0]``). ``maml_trpo_point.py`` with ``use_maml =
False`` therefore trained the pretrained point policy this way, not with TRPO.

The Adam state (first and second moments over the flat parameter vector, step count) is kept
in variables so that a checkpoint holds it and a resumed run continues the same optimizer.
The update is TF1's ``AdamOptimizer``: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), then
theta -= lr_t m / (sqrt(v) + eps), with b1 0.9, b2 0.999, eps 1e-8.
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from maml_tf import core
from rl.adaptation import inner_losses, to_sample_batch
from rl.episodes import Episodes
from rl.policies import gaussian

BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8   # tf.train.AdamOptimizer's defaults


class AdamPretrainer:
    """One full-batch Adam step per iteration on the pre-update surrogate (no inner step).

    Example:
        >>> from rl.episodes import compute_advantages
        >>> from rl.policies import GaussianMLPPolicy
        >>> from rl.pretrain import AdamPretrainer
        >>> from rl.samplers import make_sampler
        >>> sampler, _ = make_sampler("point", num_tasks=2, episodes_per_task=4, horizon=10)
        >>> policy = GaussianMLPPolicy(obs_dim=2, act_dim=2, hidden_sizes=(8,), seed=1)
        >>> learner = AdamPretrainer(policy, learning_rate=1e-3)
        >>> policy_fn = lambda obs: policy.forward_numpy(obs, policy.numpy_parameters())
        >>> batch = compute_advantages(sampler.sample([[0.3, 0.2], [-0.4, 0.1]], policy_fn, 0),
        ...                            0.99, 1.0)
        >>> info = learner.meta_step([], batch)    # the policy's variables updated in place
        >>> info["accepted"], int(learner.t.numpy())
        (True, 1)
    """

    def __init__(self, policy, learning_rate: float = 1e-3):
        if not (np.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"Adam learning rate must be > 0 and finite, got {learning_rate}")
        self.policy = policy
        self.learning_rate = learning_rate
        self.dtype = policy.log_std.dtype
        size = policy.num_params
        self.m = tf.Variable(tf.zeros([size], self.dtype), trainable=False, name="adam_m")
        self.v = tf.Variable(tf.zeros([size], self.dtype), trainable=False, name="adam_v")
        self.t = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_t")
        self._loss_grad_fn = tf.function(self._loss_grad, reduce_retracing=True)
        self._loss_kl_fn = tf.function(self._loss_and_kl, reduce_retracing=True)

    def trackables(self) -> dict:
        """What a checkpoint must hold besides the policy for a resume to continue Adam."""
        return {"adam_m": self.m, "adam_v": self.v, "adam_t": self.t}

    def _loss(self, flat_params, batch):
        params = core.tile_params(self.policy.unflatten(flat_params), tf.shape(batch.obs)[0])
        return tf.reduce_mean(inner_losses(self.policy, params, batch)), params

    def _loss_grad(self, flat_params, batch):
        with tf.GradientTape() as tape:
            tape.watch(flat_params)
            loss, _ = self._loss(flat_params, batch)
        return loss, tape.gradient(loss, flat_params)

    def _loss_and_kl(self, flat_params, old_flat, batch):
        """Surrogate at ``flat_params`` and the mean KL(old || new) over the real steps (a
        diagnostic: the original logged no KL for this optimizer)."""
        loss, params = self._loss(flat_params, batch)
        old = core.tile_params(self.policy.unflatten(old_flat), tf.shape(batch.obs)[0])
        kl = gaussian(*self.policy.forward(batch.obs, params=old)).kl_divergence(
            gaussian(*self.policy.forward(batch.obs, params=params)))
        return loss, tf.reduce_sum(kl * batch.mask) / tf.reduce_sum(batch.mask)

    def adam_update(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Advances the Adam state by one step with ``grad``; returns the new parameters."""
        self.t.assign_add(1)
        t = float(self.t.numpy())
        m = BETA1 * self.m.numpy() + (1 - BETA1) * grad
        v = BETA2 * self.v.numpy() + (1 - BETA2) * grad * grad
        self.m.assign(m)
        self.v.assign(v)
        lr_t = self.learning_rate * np.sqrt(1 - BETA2 ** t) / (1 - BETA1 ** t)
        return theta - lr_t * m / (np.sqrt(v) + EPSILON)

    def meta_step(self, train_episodes: list, valid_episodes: Episodes) -> dict:
        """One Adam step on ``valid_episodes`` (the only batch without an inner step; the
        argument order is MAMLTRPO's, so the trainer calls both alike)."""
        started = time.time()
        if train_episodes:
            raise ValueError("the Adam pretrainer has no inner step: pass no train batches")
        batch = to_sample_batch(valid_episodes, self.dtype)
        theta = self.policy.get_flat()
        loss_before, grad = self._loss_grad_fn(theta, batch)
        grad = grad.numpy()
        new = self.adam_update(theta.numpy(), grad)
        self.policy.set_flat(new)
        loss_after, kl = self._loss_kl_fn(tf.constant(new, self.dtype), theta, batch)
        return {"loss_before": float(loss_before), "loss_after": float(loss_after),
                "mean_kl": float(kl), "accepted": True, "backtracks": 0,
                "grad_norm": float(np.linalg.norm(grad)),
                "time_meta_step": time.time() - started}
