"""MAML-TRPO (maml_rl ``MAMLTRPO``): inner vanilla policy gradient, outer TRPO.

This module is the meta-optimizer (surrogate, KL, Hessian-vector products, CG, line search);
the inner step is ``rl.adaptation`` on top of the shared core ``maml_tf.core``. The losses
are pure functions of a flat parameter vector and of the sampled batches, traced
once per configuration with ``tf.function``:

* inner step, per task and vectorised over the K tasks: theta'_k = theta - fast_lr *
  grad(-mean_t log pi(a_t|s_t) A_t) on the task's pre-update batch (all parameters, log-std
  included);
* meta objective: mean over tasks of -mean_t[pi_theta'(a|s) / pi_old(a|s) * A] on the
  post-update batch, where pi_old is the post-update policy that sampled it;
* constraint: mean over all post-update steps of KL(pi_old || pi_theta') <= step_size.

``use_maml=False`` (the "pretrained" baseline) drops the inner step: theta itself is trained
with TRPO on every task's batch.
"""
from __future__ import annotations

import collections
import dataclasses
import time

import numpy as np
import tensorflow as tf

from maml_tf import core
from rl import adaptation, optimization
from rl.adaptation import PolicyAdapter, SampleBatch, masked_task_mean, to_sample_batch
from rl.episodes import Episodes
from rl.policies import GaussianMLPPolicy, gaussian

#: The post-update batch plus the sampling (old) policy's Gaussian parameters.
ValidBatch = collections.namedtuple(
    "ValidBatch", ["obs", "actions", "advantages", "mask", "old_mean", "old_log_std"])


@dataclasses.dataclass
class TRPOConfig:
    """The inner step size and TRPO's settings (maml_rl's names where it had them).

    Example: ``TRPOConfig(fast_lr=0.1, step_size=0.01, hvp="exact")``.
    """

    fast_lr: float = 0.1
    num_grad_updates: int = 1
    use_maml: bool = True
    step_size: float = 0.01        # max mean KL
    cg_iters: int = 10
    cg_damping: float = 1e-5       # rllab reg_coeff
    backtrack_ratio: float = 0.8
    max_backtracks: int = 15
    hvp: str = "fd"                # "fd" (original) or "exact" (double backprop)
    fd_base_eps: float = 1e-8      # documented; the released optimizer passed 1.0 (docs/RL.md)
    #: use_maml=False only: "trpo" (the released locomotion and oracle scripts, plain TRPO)
    #: or "adam" (maml_trpo_point.py with use_maml=False: one Adam step, rl.pretrain)
    pretrain_optimizer: str = "trpo"
    pretrain_lr: float = 1e-3      # FirstOrderOptimizer's default Adam learning rate


class MAMLTRPO:
    """The meta-optimizer: TRPO on the post-adaptation surrogate; ``meta_step`` performs one
    update. Adaptation itself is ``rl.adaptation`` (``self.adapter``), which evaluation and
    export use without this class.

    Example::

        learner = MAMLTRPO(policy, TRPOConfig(fast_lr=0.1, step_size=0.01))
        adapter = learner.adapter
        pre = compute_advantages(sampler.sample(tasks, adapter.sampling_policy(None), 0), .99, 1)
        params = adapter.adapted_params(policy.get_flat(), [to_sample_batch(pre)])
        post = compute_advantages(sampler.sample(tasks, adapter.sampling_policy(params), 1), .99, 1)
        info = learner.meta_step([pre], post)      # policy's variables updated in place
    """

    def __init__(self, policy: GaussianMLPPolicy, config: TRPOConfig):
        if config.hvp not in ("fd", "exact"):
            raise ValueError(f"hvp must be 'fd' or 'exact', got {config.hvp!r}")
        self.policy = policy
        self.config = config
        self.adapter = PolicyAdapter(policy, config.fast_lr)
        self.dtype = self.adapter.dtype
        self._loss_kl_fn = tf.function(self._loss_and_kl, reduce_retracing=True)
        self._loss_grad_fn = tf.function(self._loss_grad, reduce_retracing=True)
        self._kl_grad_fn = tf.function(self._kl_grad, reduce_retracing=True)
        self._exact_hvp_fn = tf.function(self._exact_hvp, reduce_retracing=True)
        self._old_dist_fn = tf.function(self._post_update_dist, reduce_retracing=True)

    # ------------------------------------------------------------------ meta objective
    def _post_update_params(self, flat_params, train_batches, num_tasks):
        params = core.tile_params(self.policy.unflatten(flat_params), num_tasks)
        if not self.config.use_maml:
            return params
        lrs = [tf.constant(self.config.fast_lr, self.dtype)] * len(train_batches)
        return adaptation.adapt(self.policy, params, train_batches, lrs)

    def _post_update_dist(self, flat_params, train_batches, valid: SampleBatch):
        params = self._post_update_params(flat_params, train_batches, tf.shape(valid.obs)[0])
        return self.policy.forward(valid.obs, params=params)

    def _loss_and_kl(self, flat_params, train_batches, valid: ValidBatch):
        mean, log_std = self._post_update_dist(flat_params, train_batches, valid)
        new = gaussian(mean, log_std)
        old = gaussian(valid.old_mean, valid.old_log_std)
        ratio = tf.exp(new.log_prob(valid.actions) - old.log_prob(valid.actions))
        loss = tf.reduce_mean(-masked_task_mean(ratio * valid.advantages, valid.mask))
        kl = old.kl_divergence(new)
        # the original concatenates every task's steps before averaging the KL
        mean_kl = tf.reduce_sum(kl * valid.mask) / tf.reduce_sum(valid.mask)
        return loss, mean_kl

    def _loss_grad(self, flat_params, train_batches, valid):
        with tf.GradientTape() as tape:
            tape.watch(flat_params)
            loss, _ = self._loss_and_kl(flat_params, train_batches, valid)
        return loss, tape.gradient(loss, flat_params)

    def _kl_grad(self, flat_params, train_batches, valid):
        with tf.GradientTape() as tape:
            tape.watch(flat_params)
            _, kl = self._loss_and_kl(flat_params, train_batches, valid)
        return tape.gradient(kl, flat_params)

    def _exact_hvp(self, flat_params, vector, train_batches, valid):
        with tf.GradientTape() as outer:
            outer.watch(flat_params)
            grad = self._kl_grad(flat_params, train_batches, valid)
            grad_dot_v = tf.reduce_sum(grad * vector)
        return outer.gradient(grad_dot_v, flat_params)

    # ------------------------------------------------------------------ TRPO step
    def make_valid_batch(self, flat_params, train_batches, episodes: Episodes) -> ValidBatch:
        """The post-update batch with the old post-update policy (recomputed at theta_old,
        identical to the sampling policy, so the ratio is exactly 1 at the start)."""
        batch = to_sample_batch(episodes, self.dtype)
        old_mean, old_log_std = self._old_dist_fn(flat_params, tuple(train_batches), batch)
        return ValidBatch(*batch, old_mean, old_log_std)

    def hvp_function(self, flat_params: np.ndarray, train_batches, valid):
        """x -> (H + damping I) x for the KL's Hessian at ``flat_params``."""
        def kl_grad(params_np):
            return self._kl_grad_fn(tf.constant(params_np, self.dtype), train_batches,
                                    valid).numpy()

        if self.config.hvp == "fd":
            hvp = optimization.finite_difference_hvp(kl_grad, flat_params,
                                                     self.config.fd_base_eps)
        else:
            theta = tf.constant(flat_params, self.dtype)

            def hvp(vector):
                return self._exact_hvp_fn(theta, tf.constant(vector, self.dtype),
                                          train_batches, valid).numpy()
        return optimization.damped(hvp, self.config.cg_damping)

    def meta_step(self, train_episodes: list, valid_episodes: Episodes) -> dict:
        """One TRPO update of the policy's variables; returns diagnostics."""
        started = time.time()
        cfg = self.config
        train_batches = tuple(to_sample_batch(e, self.dtype) for e in train_episodes) \
            if cfg.use_maml else tuple()
        theta = self.policy.get_flat()
        valid = self.make_valid_batch(theta, train_batches, valid_episodes)
        theta_np = theta.numpy()

        def loss_and_kl(params_np):
            loss, kl = self._loss_kl_fn(tf.constant(params_np, self.dtype), train_batches, valid)
            return loss.numpy(), kl.numpy()

        loss_before, grad = (t.numpy() for t in self._loss_grad_fn(theta, train_batches, valid))
        hvp = self.hvp_function(theta_np, train_batches, valid)
        direction = optimization.conjugate_gradient(hvp, grad, cfg.cg_iters)
        shs = float(direction @ hvp(direction))
        with np.errstate(invalid="ignore", divide="ignore"):
            step_size = np.sqrt(2.0 * cfg.step_size / (shs + 1e-8))
        if not np.isfinite(step_size):   # negative curvature estimate: the original uses 1
            step_size = 1.0
        result = optimization.backtracking_line_search(
            loss_and_kl, theta_np, step_size * direction, float(loss_before), cfg.step_size,
            cfg.backtrack_ratio, cfg.max_backtracks)
        self.policy.set_flat(result.params)
        return {
            "loss_before": float(loss_before), "loss_after": result.loss,
            "mean_kl": result.kl, "accepted": result.accepted,
            "backtracks": result.backtracks, "grad_norm": float(np.linalg.norm(grad)),
            "time_meta_step": time.time() - started,
        }
