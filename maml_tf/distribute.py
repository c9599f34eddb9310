"""Meta-batch data parallelism on ``tf.distribute`` (``--distribute=mirrored``).

What is split, and why the update is the single-device one:

- The meta-batch of B tasks is split into N equal shares, one per replica: replica r takes
  tasks [r*B/N, (r+1)*B/N) of the *same* global batch the single-device run draws, so the
  task stream (and with it the task order of a resumed run) does not depend on N.
- Each replica runs the unchanged task-batched functions of :mod:`maml_tf.maml` on its share.
  The single-device meta-loss is the mean over the B tasks; with equal shares that mean is
  the mean over replicas of each share's mean, so the per-replica gradients are combined with
  ``ReduceOp.MEAN`` (a SUM would scale the step by N). Element-wise clipping
  (MiniImagenet) is applied after the reduction: clipping each share first and averaging
  would not be the clipped mean.
- One Adam step is then applied to the mirrored variables, in cross-replica context, with
  the reduced gradients; every replica's copy receives the same update.
- No cross-replica batch-norm statistics are needed: batch norm here normalises each task
  with that task's own examples (``maml_tf.norm``), and a task lives entirely on one replica,
  so every statistic a replica computes is the one the single device computes.

The replica function slices the global batch by ``replica_id_in_sync_group`` instead of
receiving a pre-distributed dataset: the trainer, its in-graph loop of many steps per call
and the task stream stay exactly as they are. The price is that every device receives the
whole global batch (a few MB for MiniImagenet's 4 tasks) before slicing its share.

Logical CPU devices (``--num_cpu_devices``) let the mirrored path run and be tested on a CPU
host; TensorFlow only accepts that configuration before it has initialised its devices,
which is why :func:`build_strategy` is called before anything else of a run.

Several hosts (``--distribute=multi_worker``, :mod:`maml_tf.cluster`) use the same learner
on a ``MultiWorkerMirroredStrategy``: every worker builds the same task sources from the same
seed and draws the same global batch, and the global replica id picks each share, so worker
w's replicas take the tasks after those of workers 0..w-1. Evaluation (summaries,
validation, test mode) is split the same way and gathered, so it is a collective too and
every worker runs it; only the chief writes what comes out.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from maml_tf import maml
from maml_tf.evaluation import pad_tasks
from maml_tf.learner import MetaLearner, _as_tensors

STRATEGIES = ("none", "mirrored", "multi_worker")


class DistributeError(ValueError):
    """A distribution setting that cannot work on this host (raised before any work)."""


def configure_cpu_devices(num_devices: int) -> None:
    """Splits the physical CPU into ``num_devices`` logical devices.

    Must run before TensorFlow initialises its devices (its first op). A process that already
    has exactly that many logical CPU devices is accepted as it is.
    """
    if num_devices < 1:
        raise DistributeError(f"--num_cpu_devices must be >= 1, got {num_devices}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
    except RuntimeError as error:
        present = len(tf.config.list_logical_devices("CPU"))
        if present == num_devices:
            return
        raise DistributeError(
            f"--num_cpu_devices={num_devices}: TensorFlow already initialised {present} "
            f"logical CPU device(s) in this process; the devices can only be configured "
            f"before its first operation ({error})") from error


def build_strategy(distribute: str, num_cpu_devices: int = 1, worker_timeout: float = 60.0
                   ) -> Optional[tf.distribute.Strategy]:
    """None for ``none``; for ``mirrored`` a MirroredStrategy over every local GPU, or over
    ``num_cpu_devices`` logical CPU devices when there is no GPU; for ``multi_worker`` the
    cluster of ``TF_CONFIG`` (:func:`maml_tf.cluster.connect`)."""
    if distribute not in STRATEGIES:
        raise DistributeError(f"--distribute must be one of {STRATEGIES}, got {distribute!r}")
    if distribute != "mirrored" and num_cpu_devices != 1:
        raise DistributeError(f"--num_cpu_devices={num_cpu_devices} needs "
                              f"--distribute=mirrored")
    if distribute == "none":
        return None
    if distribute == "multi_worker":
        from maml_tf import cluster
        return cluster.connect(worker_timeout)
    if tf.config.list_physical_devices("GPU"):
        if num_cpu_devices != 1:
            raise DistributeError(
                f"--num_cpu_devices={num_cpu_devices} only applies when no GPU is visible; "
                f"--distribute=mirrored uses every local GPU here (set CUDA_VISIBLE_DEVICES "
                f"to choose them)")
        return tf.distribute.MirroredStrategy()
    configure_cpu_devices(num_cpu_devices)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    # Reduction on one device: NCCL is GPU-only, and CPU replicas share the host's memory.
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def check_meta_batch(meta_batch_size: int, num_replicas: int, distribute: str = "mirrored"
                     ) -> None:
    """Equal shares are what makes the mean of the replica means the global mean."""
    if meta_batch_size % num_replicas:
        raise DistributeError(
            f"--meta_batch_size={meta_batch_size} is not divisible by the {num_replicas} "
            f"replicas of --distribute={distribute}; every replica needs the same number of "
            f"tasks")


def is_chief(strategy: Optional[tf.distribute.Strategy]) -> bool:
    """Whether this process writes the run (checkpoints, summaries, records, lines, results):
    always on one host; under ``multi_worker`` only the chief (``should_checkpoint``)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


class MirroredMetaLearner(MetaLearner):
    """:class:`~maml_tf.learner.MetaLearner` whose gradients are computed per replica.

    Construct it (and its model) inside ``strategy.scope()`` so the weights and Adam's slots
    are mirrored variables. Every public method behaves as the single-device learner's;
    evaluation (summaries, validation, test mode) splits its tasks across the replicas too.

    XLA (``jit_compile``) compiles each replica's gradient computation; the functions around
    it hold ``strategy.run`` and the cross-device reduction, which XLA cannot compile, and
    stay plain ``tf.function``\\ s.

    The example runs on one CPU replica; :func:`build_strategy` with ``num_cpu_devices=2``, at
    the start of a process, gives two.

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> from maml_tf.distribute import MirroredMetaLearner
        >>> from maml_tf.maml import InnerLoopSpec
        >>> from maml_tf.models import FullyConnectedNet
        >>> strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        >>> with strategy.scope():
        ...     learner = MirroredMetaLearner(FullyConnectedNet(1, 1, (40, 40)),
        ...                                   InnerLoopSpec(0.01, 1, False), strategy)
        >>> batch = tuple(np.zeros([4, 10, 1]) for _ in range(4))  # inputa, labela, inputb, labelb
        >>> bool(learner.meta_train_step(batch)["finite"]), learner.num_replicas
        (True, 1)
    """

    def __init__(self, model, spec, strategy: tf.distribute.Strategy, meta_lr: float = 0.001,
                 clip_value: Optional[float] = None, jit_compile: bool = False):
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync
        super().__init__(model, spec, meta_lr=meta_lr, clip_value=clip_value,
                         jit_compile=False)
        self._jit_compile = jit_compile  # evaluation runs on one device and may use XLA
        self._replica_meta = tf.function(
            lambda *batch: maml.meta_gradients(model, batch, spec, None),
            jit_compile=jit_compile)
        self._replica_pretrain = tf.function(
            lambda *batch: maml.pretrain_gradients(model, batch, spec, None),
            jit_compile=jit_compile)

    def _across_replicas(self, replica_fn, batch):
        """Runs ``replica_fn`` on each replica's share of ``batch``; returns the clipped mean
        gradients and the mean metrics (the same values on every replica and worker).

        The mean is an all-reduce inside the replicas rather than ``strategy.reduce``
        afterwards: on a MultiWorkerMirroredStrategy the latter packs the gradients of
        different shapes into one tensor and fails."""
        num_replicas = self.num_replicas

        def on_replica(*global_batch):
            context = tf.distribute.get_replica_context()
            replica = context.replica_id_in_sync_group
            share = tf.shape(global_batch[0])[0] // num_replicas
            grads, metrics = replica_fn(*(x[replica * share:(replica + 1) * share]
                                          for x in global_batch))
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, (list(grads), metrics))

        grads, metrics = self.strategy.run(on_replica, args=tuple(batch))
        grads = [self._local(g) for g in grads]
        metrics = {name: self._local(value) for name, value in metrics.items()}
        return maml.clip_gradients(grads, self.clip_value), metrics

    def _local(self, value):
        """This process's copy of a value that all-reduce made equal on every replica."""
        return self.strategy.experimental_local_results(value)[0]

    def _meta_grads_impl(self, inputa, labela, inputb, labelb):
        return self._across_replicas(self._replica_meta, (inputa, labela, inputb, labelb))

    def _pretrain_grads_impl(self, inputa, labela):
        return self._across_replicas(self._replica_pretrain, (inputa, labela))

    def _apply_if_finite(self, grads, metrics):
        """The single-device update, traced outside ``strategy.scope()`` on purpose.

        The gradients are already the reduced (mean, clipped) cross-replica values. Keras 3's
        optimizer, called under the scope in cross-replica context, fails (its update goes
        through a merge call that needs a replica context); called in a replica context it
        would all-reduce (SUM) the gradients a second time. Outside the scope its reduction
        is the identity and its variable updates are cross-replica assignments of the
        mirrored variables, which write the same value to every replica's copy
        (tests/test_distribute.py checks that the copies stay equal).
        """
        return super()._apply_if_finite(grads, metrics)

    def evaluate(self, batch, num_steps: int) -> dict:
        """The single-device evaluation with the tasks split across replicas and gathered
        back in task order. A batch that does not split evenly is padded with copies of its
        last task (their rows are dropped): tasks never interact, so the rows kept are the
        unpadded ones."""
        batch = tuple(batch[:4])
        count = len(batch[0])
        size = -(-count // self.num_replicas) * self.num_replicas
        batch = pad_tasks(batch, size)
        if num_steps not in self._evaluate:
            self._evaluate[num_steps] = self._distributed_evaluate(num_steps)
        result = self._evaluate[num_steps](*_as_tensors(batch, self.model.dtype))
        return {k: v.numpy()[:count] for k, v in result.items()}

    def _distributed_evaluate(self, num_steps: int):
        model, spec, num_replicas = self.model, self.spec, self.num_replicas
        per_replica = tf.function(
            lambda *share: maml.evaluate_adaptation(model, share, spec, num_steps),
            jit_compile=self._jit_compile)

        @tf.function
        def evaluate(*global_batch):
            def on_replica(*tensors):
                replica = tf.distribute.get_replica_context().replica_id_in_sync_group
                share = tf.shape(tensors[0])[0] // num_replicas
                return per_replica(*(x[replica * share:(replica + 1) * share]
                                     for x in tensors))
            values = self.strategy.run(on_replica, args=global_batch)
            return {k: self.strategy.gather(v, axis=0) for k, v in values.items()}
        return evaluate

    def _check_batch(self, batch_size: int):
        if batch_size % self.num_replicas:
            raise DistributeError(
                f"a meta-batch of {batch_size} tasks cannot be split into "
                f"{self.num_replicas} equal shares (--meta_batch_size must be divisible by "
                f"the number of replicas)")

    def meta_train_step(self, batch) -> dict:
        self._check_batch(len(batch[0]))
        return super().meta_train_step(batch)

    def pretrain_step(self, batch) -> dict:
        self._check_batch(len(batch[0]))
        return super().pretrain_step(batch)

    def meta_train_steps(self, stacked_batch):
        self._check_batch(len(stacked_batch[0][0]))
        return super().meta_train_steps(stacked_batch)

    def pretrain_steps(self, stacked_batch):
        self._check_batch(len(stacked_batch[0][0]))
        return super().pretrain_steps(stacked_batch)
