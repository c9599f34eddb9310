"""MAML-TRPO (maml_rl ``MAMLTRPO``): inner vanilla policy gradient, outer TRPO.

This module is the meta-optimizer (surrogate, KL, Hessian-vector products, CG, line search);
the inner step is ``rl.adaptation`` on top of the shared core ``maml_tf.core``. The losses
are pure functions of a flat parameter vector and of the sampled batches, traced
once per configuration with ``tf.function``. Each is written as sums over a share of the
tasks followed by the division that makes them means, so that ``rl.distribute`` can compute
the sums on several devices and all-reduce them (``--distribute=mirrored``):

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

    Example:
        >>> from rl.maml_trpo import TRPOConfig
        >>> config = TRPOConfig(fast_lr=0.1, step_size=0.01, hvp="exact")
        >>> config.num_grad_updates, config.use_maml, config.cg_iters
        (1, True, 10)
        >>> TRPOConfig(use_maml=False).pretrain_optimizer   # the pretrained baseline: TRPO
        'trpo'
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

    Example:
        >>> from rl.adaptation import to_sample_batch
        >>> from rl.episodes import compute_advantages
        >>> from rl.maml_trpo import MAMLTRPO, TRPOConfig
        >>> from rl.policies import GaussianMLPPolicy
        >>> from rl.samplers import make_sampler
        >>> sampler, _ = make_sampler("point", num_tasks=2, episodes_per_task=4, horizon=10)
        >>> tasks = [[0.3, 0.2], [-0.4, 0.1]]
        >>> policy = GaussianMLPPolicy(obs_dim=2, act_dim=2, hidden_sizes=(8,), seed=1)
        >>> learner = MAMLTRPO(policy, TRPOConfig(fast_lr=0.1, step_size=0.01))
        >>> adapter = learner.adapter
        >>> pre = compute_advantages(sampler.sample(tasks, adapter.sampling_policy(None), 0),
        ...                          0.99, 1.0)
        >>> params = adapter.adapted_params(policy.get_flat(), [to_sample_batch(pre)])
        >>> post = compute_advantages(sampler.sample(tasks, adapter.sampling_policy(params), 1),
        ...                           0.99, 1.0)
        >>> info = learner.meta_step([pre], post)  # the policy's variables updated in place
        >>> info["accepted"], info["mean_kl"] <= 0.01
        (True, True)
    """

    def __init__(self, policy: GaussianMLPPolicy, config: TRPOConfig):
        if config.hvp not in ("fd", "exact"):
            raise ValueError(f"hvp must be 'fd' or 'exact', got {config.hvp!r}")
        self.policy = policy
        self.config = config
        self.adapter = PolicyAdapter(policy, config.fast_lr)
        self.dtype = self.adapter.dtype
        # Each function is a per-share part (sums over a share of the tasks) and a finish
        # (the task means from the totals); _compose joins them, here on one device, in
        # rl.distribute across replicas.
        self._loss_kl_fn = self._compose(self._task_sums, _finish_loss_kl)
        self._loss_grad_fn = self._compose(self._share_loss_grad, _finish_loss_grad)
        self._kl_grad_fn = self._compose(self._kl_sum_grad, _finish_over_steps)
        self._exact_hvp_fn = self._compose(self._share_exact_hvp, _finish_over_steps)
        self._hessian_hvp_fn = self._compose(self._share_hessian_hvp, _finish_over_steps)
        self._old_dist_fn = self._per_task(self._post_update_dist)

    # ------------------------------------------------------------------ placement
    def _compose(self, share_fn, finish):
        """``finish(*share_fn(*args))`` as one traced function over all the tasks."""
        return tf.function(lambda *args: finish(*share_fn(*args)), reduce_retracing=True)

    def _per_task(self, fn):
        """``fn`` (per-task outputs, nothing summed) as a traced function."""
        return tf.function(fn, reduce_retracing=True)

    def place(self, train_batches, valid) -> tuple:
        """The batches in the form the traced functions take: here as they are; a
        distributed learner splits them across its replicas once per step."""
        return tuple(train_batches), valid

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

    def _task_sums(self, flat_params, train_batches, valid: ValidBatch):
        """Over the tasks of ``valid``: the sum of the per-task surrogates, the sum of the KL
        over their real steps, the number of real steps and the number of tasks. The loss is
        the first over the last, the mean KL the second over the third (the original
        concatenates every task's steps before averaging the KL): sums, so that a share of
        the tasks contributes its part and the totals give the same means."""
        mean, log_std = self._post_update_dist(flat_params, train_batches, valid)
        new = gaussian(mean, log_std)
        old = gaussian(valid.old_mean, valid.old_log_std)
        ratio = tf.exp(new.log_prob(valid.actions) - old.log_prob(valid.actions))
        loss_sum = tf.reduce_sum(-masked_task_mean(ratio * valid.advantages, valid.mask))
        kl = old.kl_divergence(new)
        num_tasks = tf.cast(tf.shape(valid.obs)[0], self.dtype)
        return loss_sum, tf.reduce_sum(kl * valid.mask), tf.reduce_sum(valid.mask), num_tasks

    def _share_loss_grad(self, flat_params, train_batches, valid):
        with tf.GradientTape() as tape:
            tape.watch(flat_params)
            loss_sum, _, _, num_tasks = self._task_sums(flat_params, train_batches, valid)
        return loss_sum, tape.gradient(loss_sum, flat_params), num_tasks

    def _kl_sum_grad(self, flat_params, train_batches, valid):
        """Gradient of the KL's numerator, and its denominator (no parameter in it)."""
        with tf.GradientTape() as tape:
            tape.watch(flat_params)
            _, kl_sum, steps, _ = self._task_sums(flat_params, train_batches, valid)
        return tape.gradient(kl_sum, flat_params), steps

    def _share_exact_hvp(self, flat_params, vector, train_batches, valid):
        """The KL's Hessian times ``vector`` at the sampling parameters, as J^T F J v.

        The KL is f(phi(theta)) with phi the post-update Gaussian's (mean, log_std) at every
        step. Its Hessian is J^T F J + sum_i df/dphi_i * Hessian(phi_i); where theta is the
        parameter vector that sampled the batch (``valid.old_*`` computed from it, which is
        where TRPO's CG uses it) the new Gaussian equals the old one, df/dphi = 0, and the
        first term is the whole Hessian. F, the Gaussian KL's Hessian at equality, is 1/std^2
        for a mean and 2 for a log-std, per step and action dimension. One forward-mode and
        one reverse pass through the inner step instead of differentiating the KL's gradient
        again (1.8x faster on the point robot); ``_share_hessian_hvp`` is that second
        derivative, the reference the tests compare with."""
        with tf.GradientTape() as tape:
            tape.watch(flat_params)
            with tf.autodiff.ForwardAccumulator(flat_params, vector) as accumulator:
                mean, log_std = self._post_update_dist(flat_params, train_batches, valid)
            mask = valid.mask[..., None]
            mean_weight = tf.stop_gradient(accumulator.jvp(mean) * tf.exp(-2.0 * log_std)
                                           * mask)
            log_std_weight = tf.stop_gradient(2.0 * accumulator.jvp(log_std) * mask)
            pulled = tf.reduce_sum(mean * mean_weight) + tf.reduce_sum(log_std * log_std_weight)
        return tape.gradient(pulled, flat_params), tf.reduce_sum(valid.mask)

    def _share_hessian_hvp(self, flat_params, vector, train_batches, valid):
        """The KL's Hessian-vector product at any parameters: the gradient of grad(KL) . v."""
        with tf.GradientTape() as outer:
            outer.watch(flat_params)
            grad, steps = self._kl_sum_grad(flat_params, train_batches, valid)
            grad_dot_v = tf.reduce_sum(grad * vector)
        return outer.gradient(grad_dot_v, flat_params), steps

    # ------------------------------------------------------------------ TRPO step
    def make_valid_batch(self, flat_params, train_batches, episodes: Episodes) -> ValidBatch:
        """The post-update batch with the old post-update policy (recomputed at theta_old,
        identical to the sampling policy, so the ratio is exactly 1 at the start)."""
        batch = to_sample_batch(episodes, self.dtype)
        old_mean, old_log_std = self._old_dist_fn(flat_params, *self.place(train_batches,
                                                                          batch))
        return ValidBatch(*batch, old_mean, old_log_std)

    def hvp_function(self, flat_params: np.ndarray, train_batches, valid):
        """x -> (H + damping I) x for the KL's Hessian at ``flat_params``; the exact
        product assumes ``flat_params`` sampled ``valid`` (as in ``meta_step``)."""
        return self._hvp(flat_params, self.place(train_batches, valid))

    def _hvp(self, flat_params: np.ndarray, data: tuple):
        def kl_grad(params_np):
            return self._kl_grad_fn(tf.constant(params_np, self.dtype), *data).numpy()

        if self.config.hvp == "fd":
            hvp = optimization.finite_difference_hvp(kl_grad, flat_params,
                                                     self.config.fd_base_eps)
        else:
            theta = tf.constant(flat_params, self.dtype)

            def hvp(vector):
                return self._exact_hvp_fn(theta, tf.constant(vector, self.dtype),
                                          *data).numpy()
        return optimization.damped(hvp, self.config.cg_damping)

    def meta_step(self, train_episodes: list, valid_episodes: Episodes) -> dict:
        """One TRPO update of the policy's variables; returns diagnostics."""
        started = time.time()
        cfg = self.config
        train_batches = tuple(to_sample_batch(e, self.dtype) for e in train_episodes) \
            if cfg.use_maml else tuple()
        theta = self.policy.get_flat()
        valid = self.make_valid_batch(theta, train_batches, valid_episodes)
        data = self.place(train_batches, valid)
        theta_np = theta.numpy()

        def loss_and_kl(params_np):
            loss, kl = self._loss_kl_fn(tf.constant(params_np, self.dtype), *data)
            return loss.numpy(), kl.numpy()

        loss_before, grad = (t.numpy() for t in self._loss_grad_fn(theta, *data))
        hvp = self._hvp(theta_np, data)
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


def _finish_loss_kl(loss_sum, kl_sum, steps, num_tasks):
    """(mean surrogate over tasks, mean KL over all real post-update steps)."""
    return loss_sum / num_tasks, kl_sum / steps



def _finish_loss_grad(loss_sum, grad_sum, num_tasks):
    """(mean surrogate over tasks, its gradient)."""
    return loss_sum / num_tasks, grad_sum / num_tasks


def _finish_over_steps(kl_sum_term, steps):
    """The KL's gradient or Hessian-vector product from its numerator's: the denominator,
    the number of real steps, does not depend on the parameters."""
    return kl_sum_term / steps
