"""Export a meta-trained Gaussian MLP policy as a self-contained SavedModel.

Two signatures, needing only TensorFlow to load (none of this project's code):

- ``act(observations)``: mean and log-std of the meta-learned (pre-update) policy;
- ``adapt_and_act(observations, actions, advantages, query_observations)``: one vanilla
  policy-gradient step with ``fast_lr`` on one task's samples *inside the graph* (the
  training code's own inner step, ``rl.adaptation.adapt_step``), then the adapted policy's mean
  and log-std at ``query_observations``.

Rollouts cannot live in a graph, so the caller samples with ``act``, computes advantages as
training did (discounted returns minus the linear feature baseline, centred and scaled per
task; ``rl.baseline``) and calls ``adapt_and_act``: the paper's one-step adaptation. The
step size is fixed at export time (``fast_lr`` records it). Inputs are checked inside the
graph with messages naming the argument, and the SavedModel is written through a temporary
folder (``maml_tf.export.save_replacing``), as the supervised export.
"""
from __future__ import annotations

import tensorflow as tf

from maml_tf.export import checked_rows, frozen_copies, same_rows, save_replacing
from rl.adaptation import SampleBatch, adapt_step
from rl.policies import GaussianMLPPolicy


class _ExportedPolicy(tf.Module):
    def __init__(self, policy: GaussianMLPPolicy, fast_lr: float):
        super().__init__(name="maml_trpo_policy")
        dtype = policy.log_std.dtype
        self.params = frozen_copies(dict(policy.named_variables()))
        # Recorded for users of the SavedModel; the traced graph uses the Python value.
        self.fast_lr = tf.Variable(fast_lr, dtype=dtype, trainable=False)
        fast_lr = tf.constant(fast_lr, dtype)
        obs_dim = policy.obs_dim
        act_dim = policy.act_dim

        def task_params():   # one task: the leading task dimension of the training code
            return {name: tf.convert_to_tensor(v)[None] for name, v in self.params.items()}

        def as_dict(mean, log_std):
            return {"mean": mean[0], "log_std": log_std[0]}

        @tf.function(input_signature=[tf.TensorSpec([None, obs_dim], dtype,
                                                     name="observations")])
        def act(observations):
            observations = checked_rows(observations, "observations", obs_dim, allow_empty=True)
            return as_dict(*policy.forward(observations[None], params=task_params()))

        @tf.function(input_signature=[
            tf.TensorSpec([None, obs_dim], dtype, name="observations"),
            tf.TensorSpec([None, act_dim], dtype, name="actions"),
            tf.TensorSpec([None], dtype, name="advantages"),
            tf.TensorSpec([None, obs_dim], dtype, name="query_observations")])
        def adapt_and_act(observations, actions, advantages, query_observations):
            observations = checked_rows(observations, "observations", obs_dim)
            actions = same_rows(observations, "observations",
                                checked_rows(actions, "actions", act_dim), "actions")
            advantages = same_rows(observations, "observations", advantages, "advantages")
            query_observations = checked_rows(query_observations, "query_observations",
                                              obs_dim, allow_empty=True)
            batch = SampleBatch(observations[None], actions[None], advantages[None],
                                tf.ones_like(advantages)[None])
            adapted = adapt_step(policy, task_params(), batch, fast_lr)
            return as_dict(*policy.forward(query_observations[None], params=adapted))

        self.act = act
        self.adapt_and_act = adapt_and_act


def export_policy(policy, export_dir: str, fast_lr: float | None = None) -> str:
    """Writes the SavedModel of ``policy`` (its current weights) adapting with ``fast_lr``;
    returns the path.

    ``policy`` may also be a ``MAMLTRPO`` learner (the former signature): its policy and
    ``config.fast_lr`` are used. Example::

        export_policy(policy, "exported/point", fast_lr=0.1)
    """
    if not isinstance(policy, GaussianMLPPolicy):   # a learner: the former call
        fast_lr = policy.config.fast_lr if fast_lr is None else fast_lr
        policy = policy.policy
    if fast_lr is None:
        raise ValueError("export_policy needs fast_lr, the step size of adapt_and_act")
    module = _ExportedPolicy(policy, fast_lr)
    return save_replacing(module, export_dir, signatures={
        "act": module.act, "adapt_and_act": module.adapt_and_act})
