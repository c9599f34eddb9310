"""A plain configuration object built from flags at the edge (main.py) and passed down.

It also derives what the original computed inside ``main()``: the experiment directory name,
``test_num_updates`` and the meta-batch size used while testing.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional


@dataclasses.dataclass
class ExperimentConfig:
    """Every setting of a supervised run, with the original flag names.

    Example:
        >>> from maml_tf.config import ExperimentConfig
        >>> cfg = ExperimentConfig(datasource="sinusoid", update_batch_size=10, update_lr=0.01,
        ...                        norm="None", logdir="logs/sine/")
        >>> cfg.experiment_dir                    # the original's exp_string under --logdir
        'logs/sine/cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm'
        >>> cfg.classification, cfg.test_num_updates, cfg.train_update_lr
        (False, 5, 0.01)
    """

    datasource: str = "sinusoid"
    num_classes: int = 5
    baseline: Optional[str] = None
    pretrain_iterations: int = 0
    metatrain_iterations: int = 15000
    meta_batch_size: int = 25
    meta_lr: float = 0.001
    update_batch_size: int = 5
    update_lr: float = 0.001
    num_updates: int = 1
    norm: str = "batch_norm"
    num_filters: int = 64
    conv: bool = True
    max_pool: bool = False
    stop_grad: bool = False
    log: bool = True
    logdir: str = "/tmp/data"
    resume: bool = True
    train: bool = True
    test_iter: int = -1
    test_set: bool = False
    train_update_batch_size: int = -1
    train_update_lr: float = -1
    # Additions of this project (not in the original).
    seed: int = 0
    xla: str = "auto"
    steps_per_call: int = 0  # iterations per tf.function call; 0: see steps_per_execution
    intra_op_threads: int = -1  # -1: see intra_op_parallelism; 0: TensorFlow's default
    task_groups: int = -1  # -1: see task_group_count; 1: the meta-batch as one computation
    factored_inner_step: bool = True  # dense nets, one inner step: maml_tf/factored.py
    export_dir: str = ""
    export_num_updates: int = -1
    omniglot_folder: str = "./data/omniglot_resized"
    miniimagenet_folder: str = "./data/miniImagenet"
    num_test_tasks: int = 600
    test_batch_size: int = 50
    # Run-folder discipline and saving (maml_tf/run_folder.py, maml_tf/trainer.py).
    overwrite: bool = False
    checkpoint_interval: int = 1000   # the original's SAVE_INTERVAL
    checkpoint_minutes: float = 10.0  # also save when this long has passed since the last save
    # -1: the original's test seeds (pool random.seed(6), seed 1); N >= 0: both from N.
    test_seed: int = -1
    # Meta-batch split across devices (maml_tf/distribute.py): none, mirrored or
    # multi_worker (TF_CONFIG, maml_tf/cluster.py); logical CPU devices for mirrored on a
    # host without GPU; seconds to wait for the other workers (joining, and a silent peer).
    distribute: str = "none"
    num_cpu_devices: int = 1
    worker_timeout: float = 60.0

    def __post_init__(self):
        # The original fills these in from the current values when left at -1.
        if self.train_update_batch_size == -1:
            self.train_update_batch_size = self.update_batch_size
        if self.train_update_lr == -1:
            self.train_update_lr = self.update_lr

    @property
    def classification(self) -> bool:
        return self.datasource != "sinusoid"

    @property
    def test_num_updates(self) -> int:
        """Steps evaluated beyond ``num_updates``: as the original's main()."""
        if self.datasource == "sinusoid":
            return 5 if self.train else 10
        if self.datasource == "miniimagenet":
            return 1 if self.train else 10
        return 10

    @property
    def eval_num_updates(self) -> int:
        """The original's model evaluates max(test_num_updates, num_updates) steps."""
        return max(self.test_num_updates, self.num_updates)

    @property
    def clip_meta_gradients(self) -> Optional[float]:
        return 10.0 if self.datasource == "miniimagenet" else None

    @property
    def experiment_dir(self) -> str:
        return f"{self.logdir.rstrip('/')}/{experiment_name(self)}"

    @property
    def steps_per_execution(self) -> int:
        """Iterations run in one call between the original's summary/print/save points.

        Python dispatch costs as much as a sinusoid step itself and little next to an
        image-classification step (whose stacked batches would also take memory): auto (0)
        runs up to 100 iterations per call for the sinusoid and 1 otherwise. The numbers are
        the same either way (tests/test_fast_paths.py).
        """
        if self.steps_per_call > 0:
            return self.steps_per_call
        return 100 if self.datasource == "sinusoid" else 1

    @property
    def intra_op_parallelism(self) -> int:
        """Threads per TensorFlow kernel (0: TensorFlow's default, one per core).

        The sinusoid's kernels are tiny (25 tasks x 10 points x 40 units): handing each one
        to a second thread costs more than it saves, so auto (-1) runs them on one thread
        (37% less time per second-order meta-iteration, 13% first order, on a 2-core AVX2
        EPYC: docs/RESULTS.md "Speed"); conv nets and distributed runs keep TensorFlow's
        default.
        """
        if self.intra_op_threads >= 0:
            return self.intra_op_threads
        if self.distribute != "none":
            return 0
        return 1 if self.datasource == "sinusoid" or self.task_group_count > 1 else 0

    @property
    def task_group_count(self) -> int:
        """Independent groups the meta-batch's tasks are computed in (speed only).

        Conv nets' kernels are small per task (Omniglot: 5 images of 28 x 28); one kernel
        split over every core spends much of its time handing work over. Auto (-1) computes
        the tasks in 2 groups per core, side by side, each kernel on one core
        (``intra_op_parallelism`` 1): 22-38% less time per meta-iteration on a 2-core AVX2
        EPYC (docs/RESULTS.md "Speed", session 10). Not for the fully connected nets (XLA
        compiles them whole; the sinusoid already runs on one core), not with
        ``--distribute`` (the replicas split the batch already). It assumes a CPU: on a GPU
        pass ``--task_groups=1``.
        """
        if self.task_groups >= 1:
            return self.task_groups
        if self.distribute != "none" or not self.conv or self.datasource == "sinusoid":
            return 1
        return min(self.meta_batch_size, 2 * len(os.sched_getaffinity(0)))

    @property
    def use_xla(self) -> bool:
        """XLA helps fully connected nets but makes convolutions 5-50x slower on CPU."""
        if self.xla == "auto":
            return self.datasource == "sinusoid" or not self.conv
        return self.xla == "on"


def experiment_name(cfg: ExperimentConfig) -> str:
    """The original's ``exp_string``, e.g. ``cls_5.mbs_25.ubs_10.numstep1.updatelr0.001nonorm``.

    Built from the *training* K and step size (``train_update_batch_size``/``train_update_lr``)
    so a model trained with one K can be tested with another and still be found.
    """
    name = (f"cls_{cfg.num_classes}.mbs_{cfg.meta_batch_size}"
            f".ubs_{cfg.train_update_batch_size}.numstep{cfg.num_updates}"
            f".updatelr{cfg.train_update_lr}")
    if cfg.num_filters != 64:
        name += f"hidden{cfg.num_filters}"
    if cfg.max_pool:
        name += "maxpool"
    if cfg.stop_grad:
        name += "stopgrad"
    if cfg.baseline:
        name += str(cfg.baseline)
    if cfg.norm == "batch_norm":
        name += "batchnorm"
    elif cfg.norm == "layer_norm":
        name += "layernorm"
    elif cfg.norm == "None":
        name += "nonorm"
    return name
