"""Adapting a Gaussian policy to tasks: maml_rl's inner vanilla policy-gradient step.

theta'_k = theta - lr * grad(-mean_t log pi(a_t|s_t) A_t) on task k's batch, for all K tasks
at once (parameters with a leading task dimension), all parameters included (the log-std
too). The step itself is :func:`maml_tf.core.gradient_update`, the supervised learner's;
this module only adds the policy-gradient loss. Training (``rl.maml_trpo``, which
differentiates through it), evaluation (``rl.evaluate``) and export (``rl.export``) all adapt
with these functions, and the last two need no TRPO learner to do so.
"""
from __future__ import annotations

import collections
import functools

import tensorflow as tf

from maml_tf import core
from rl.episodes import Episodes

#: One batch of samples for K tasks as tensors of shape (K, M, ...), M = episodes x horizon:
#: the policy-gradient counterpart of the supervised (inputa, labela) support set.
SampleBatch = collections.namedtuple("SampleBatch", ["obs", "actions", "advantages", "mask"])


def to_sample_batch(episodes: Episodes, dtype=tf.float32) -> SampleBatch:
    """The tensors the losses need, from episodes whose advantages were computed."""
    if episodes.advantages is None:
        raise ValueError("compute_advantages must run before the batch is used for a loss")
    return SampleBatch(*(tf.constant(episodes.flat(name), dtype=dtype)
                         for name in ("observations", "actions", "advantages", "mask")))


def masked_task_mean(values, mask):
    """Mean over each task's real steps, (K, M) -> (K,)."""
    return tf.reduce_sum(values * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def inner_losses(policy, params: dict, batch: SampleBatch):
    """Per-task VPG surrogate -mean_t(log pi(a|s) * A), shape (K,)."""
    log_prob = policy(batch.obs, params=params).log_prob(batch.actions)
    return -masked_task_mean(log_prob * batch.advantages, batch.mask)


def adapt_step(policy, params: dict, batch: SampleBatch, lr) -> dict:
    """One VPG step per task; ``params`` carry the task dimension K. Differentiable: under
    an outer tape the result has second-order gradients (full MAML)."""
    fast, _ = core.gradient_update(lambda p: inner_losses(policy, p, batch), params, lr)
    return fast


def adapt(policy, params: dict, batches, lrs) -> dict:
    """``len(batches)`` VPG steps, step i on ``batches[i]`` with ``lrs[i]``; the final
    per-task parameters (``params`` unchanged when there is no batch)."""
    if not batches:
        return params
    trajectory, _ = core.adapt(lambda p, step: inner_losses(policy, p, batches[step]),
                               params, len(batches), list(lrs))
    return trajectory[-1]


class PolicyAdapter:
    """Traced adaptation and sampling functions of one policy (no meta-optimizer).

    Example:
        >>> from rl.adaptation import PolicyAdapter, to_sample_batch
        >>> from rl.episodes import compute_advantages
        >>> from rl.policies import GaussianMLPPolicy
        >>> from rl.samplers import make_sampler
        >>> sampler, _ = make_sampler("point", num_tasks=2, episodes_per_task=4, horizon=10)
        >>> tasks = [[0.3, 0.2], [-0.4, 0.1]]
        >>> policy = GaussianMLPPolicy(obs_dim=2, act_dim=2, hidden_sizes=(8,), seed=1)
        >>> adapter = PolicyAdapter(policy, fast_lr=0.1)
        >>> episodes = sampler.sample(tasks, adapter.sampling_policy(None), seed=0)
        >>> batch = to_sample_batch(compute_advantages(episodes, 0.99, 1.0))
        >>> params = adapter.adapted_params(policy.get_flat(), [batch])
        >>> tuple(params["mean/kernel"].shape)     # one adapted policy per task
        (2, 8, 2)
        >>> post = sampler.sample(tasks, adapter.sampling_policy(params), seed=1)
        >>> post.average_return_per_task().shape
        (2,)
    """

    def __init__(self, policy, fast_lr: float):
        self.policy = policy
        self.fast_lr = fast_lr
        self.dtype = policy.log_std.dtype
        self._adapt_fn = tf.function(self._adapt, reduce_retracing=True)
        self._adapt_from_fn = tf.function(
            lambda params, batches, lrs: adapt(self.policy, params, batches, lrs),
            reduce_retracing=True)

    def _adapt(self, flat_params, batches, lrs):
        num_tasks = tf.shape(batches[0].obs)[0]
        params = core.tile_params(self.policy.unflatten(flat_params), num_tasks)
        return adapt(self.policy, params, batches, lrs)

    def adapted_params(self, flat_params, batches, lrs=None) -> dict:
        """Per-task parameters after len(batches) inner steps (tensors, (K, ...)), from the
        flat parameter vector ``flat_params``; ``lrs`` defaults to ``fast_lr`` each step."""
        lrs = lrs or [self.fast_lr] * len(batches)
        return self._adapt_fn(flat_params, tuple(batches),
                              tuple(tf.constant(lr, self.dtype) for lr in lrs))

    def adapted_from(self, params: dict, batches, lrs) -> dict:
        """As :meth:`adapted_params` from per-task starting parameters (K, ...), e.g. one
        random initialisation per goal (the random baseline of the direction tasks)."""
        return self._adapt_from_fn(params, tuple(batches),
                                   tuple(tf.constant(lr, self.dtype) for lr in lrs))

    def sampling_policy(self, params: dict | None):
        """``policy_fn`` for the sampler: numpy (K, N, obs) -> numpy (mean, log_std), with
        ``params`` (None: the policy's own, unbatched). In numpy: the sampler calls it once
        per time step, where TensorFlow's dispatch would cost more than the network
        (``GaussianMLPPolicy.forward_numpy``)."""
        return functools.partial(self.policy.forward_numpy,
                                 params=self.policy.numpy_parameters(params))
