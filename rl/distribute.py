"""The TRPO meta-step on ``tf.distribute`` (``python -m rl.main --distribute=mirrored``).

What is split, and why CG and the line search see the single-device numbers:

- Rollouts are sampled as before (worker processes, ``rl.samplers``); only the per-task part
  of the meta-step is distributed. Its K tasks are split into N equal shares, replica r
  taking tasks [r*K/N, (r+1)*K/N) of the same batch; the shares are placed on the replicas'
  devices once per step (:meth:`MirroredTRPO.place`), not on every one of the step's
  calls (a few tens of surrogate, gradient and Hessian-vector evaluations).
- Every task-mean term of :mod:`rl.maml_trpo` is a ratio of sums over tasks: the surrogate
  is (sum of per-task surrogates) / K, the mean KL is (sum of the KL over real steps) /
  (number of real steps). Each replica computes its share's sums, and the gradient, or the
  Hessian-vector product, of its numerator; these are all-reduced with SUM and divided
  afterwards. Averaging the replicas' own means instead would weight the KL of every share
  equally however many real steps (masks) it has, which is not the single-device KL.
- The policy is not mirrored: every function is a function of the flat parameter vector,
  which is passed to all replicas; conjugate gradient, the step size and the line search run
  on the host in numpy on the reduced values, exactly as on one device (the numbers differ
  only by the order of float sums).

``multi_worker`` is not offered for RL: every worker would have to sample the same batches
(simulator state in worker processes per host), which this module does not arrange.
"""
from __future__ import annotations

import tensorflow as tf

from maml_tf.distribute import check_meta_batch
from rl.maml_trpo import MAMLTRPO, TRPOConfig
from rl.policies import GaussianMLPPolicy


def _not_reduce_notice(record) -> bool:
    """The strategy logs "Reduce to <device> then broadcast to ..." at INFO whenever it traces
    an all-reduce, several times per meta-step while shapes change; rl.main logs INFO."""
    return not record.getMessage().startswith("Reduce to ")


class MirroredTRPO(MAMLTRPO):
    """:class:`~rl.maml_trpo.MAMLTRPO` whose per-task terms are computed across the replicas
    of ``strategy``; every public method takes and returns what the single-device learner's
    does.

    In a run, ``maml_tf.distribute.build_strategy("mirrored", num_cpu_devices=2)`` makes the
    strategy before TensorFlow's first operation; the example uses one replica on the CPU.

    Example:
        >>> import tensorflow as tf
        >>> from rl.adaptation import to_sample_batch
        >>> from rl.distribute import MirroredTRPO
        >>> from rl.episodes import compute_advantages
        >>> from rl.maml_trpo import TRPOConfig
        >>> from rl.policies import GaussianMLPPolicy
        >>> from rl.samplers import make_sampler
        >>> sampler, _ = make_sampler("point", num_tasks=2, episodes_per_task=4, horizon=10)
        >>> tasks = [[0.3, 0.2], [-0.4, 0.1]]
        >>> policy = GaussianMLPPolicy(obs_dim=2, act_dim=2, hidden_sizes=(8,), seed=1)
        >>> learner = MirroredTRPO(policy, TRPOConfig(), tf.distribute.MirroredStrategy(["/cpu:0"]))
        >>> pre = compute_advantages(
        ...     sampler.sample(tasks, learner.adapter.sampling_policy(None), 0), 0.99, 1.0)
        >>> params = learner.adapter.adapted_params(policy.get_flat(), [to_sample_batch(pre)])
        >>> post = compute_advantages(
        ...     sampler.sample(tasks, learner.adapter.sampling_policy(params), 1), 0.99, 1.0)
        >>> info = learner.meta_step([pre], post)  # same update as MAMLTRPO's
        >>> learner.num_replicas, info["accepted"]
        (1, True)
    """

    def __init__(self, policy: GaussianMLPPolicy, config: TRPOConfig,
                 strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync
        super().__init__(policy, config)
        tf.get_logger().addFilter(_not_reduce_notice)   # once: filters are a set

    def check_tasks(self, num_tasks: int) -> None:
        """Equal shares: every replica's functions are traced once for one share shape (the
        trainer checks the flag before sampling; this guards direct use of ``place``)."""
        check_meta_batch(num_tasks, self.num_replicas)

    def place(self, train_batches, valid) -> tuple:
        """(train_batches, valid) with every tensor replaced by its replicas' shares, each
        on its replica's device."""
        data = (tuple(train_batches), valid)
        num_tasks = int(valid.obs.shape[0])
        self.check_tasks(num_tasks)
        share = num_tasks // self.num_replicas

        def replica_share(context):
            start = context.replica_id_in_sync_group * share
            return tf.nest.map_structure(lambda x: tf.identity(x[start:start + share]), data)

        return self.strategy.experimental_distribute_values_from_function(replica_share)

    def _compose(self, share_fn, finish):
        """Each replica's sums, all-reduced (SUM), then ``finish`` on one copy."""
        strategy = self.strategy

        def on_replica(*args):
            sums = share_fn(*args)
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, sums)

        def run(*args):
            sums = strategy.run(on_replica, args=args)
            return finish(*(strategy.experimental_local_results(s)[0] for s in sums))
        return tf.function(run, reduce_retracing=True)

    def _per_task(self, fn):
        """Each replica's per-task outputs, concatenated in task order."""
        strategy = self.strategy

        def run(*args):
            outputs = strategy.run(fn, args=args)
            return tf.nest.map_structure(
                lambda value: tf.concat(strategy.experimental_local_results(value), axis=0),
                outputs)
        return tf.function(run, reduce_retracing=True)
