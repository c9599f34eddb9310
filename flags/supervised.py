"""Flags of the supervised ``main.py``: the original's names and defaults, plus additions.

Validation happens here, before any data is read or any graph is traced: absl validators give
a clear message naming the flag. Only ``main.py`` imports this module.
"""
from __future__ import annotations

import math
import os
import tempfile

from absl import flags

from flags import common

FLAGS = flags.FLAGS

DATASOURCES = ("sinusoid", "omniglot", "miniimagenet")

# ---- The original's flags, same names and defaults ----------------------------------------
## Dataset/method options
flags.DEFINE_enum("datasource", "sinusoid", list(DATASOURCES),
                  "sinusoid or omniglot or miniimagenet")
flags.DEFINE_integer("num_classes", 5,
                     "number of classes used in classification (e.g. 5-way classification).")
# oracle means task id is input (only suitable for sinusoid)
flags.DEFINE_string("baseline", None, "oracle, or None")

## Training options
flags.DEFINE_integer("pretrain_iterations", 0,
                     "number of pre-training iterations (the 'pretrained on all tasks' "
                     "baseline: Adam on the support loss, no inner loop).")
flags.DEFINE_integer("metatrain_iterations", 15000,
                     "number of metatraining iterations.")  # 15k for omniglot, 50k for sinusoid
flags.DEFINE_integer("meta_batch_size", 25, "number of tasks sampled per meta-update")
flags.DEFINE_float("meta_lr", 0.001, "the base learning rate of the generator")
flags.DEFINE_integer("update_batch_size", 5,
                     "number of examples used for inner gradient update (K for K-shot learning).")
flags.DEFINE_float("update_lr", 1e-3, "step size alpha for inner gradient update.")  # 0.1 for omniglot
flags.DEFINE_integer("num_updates", 1, "number of inner gradient updates during training.")

## Model options
flags.DEFINE_enum("norm", "batch_norm", ["batch_norm", "layer_norm", "None"],
                  "batch_norm, layer_norm, or None")
flags.DEFINE_integer("num_filters", 64,
                     "number of filters for conv nets -- 32 for miniimagenet, 64 for omiglot.")
flags.DEFINE_bool("conv", True,
                  "whether or not to use a convolutional network, only applicable in some cases")
flags.DEFINE_bool("max_pool", False,
                  "Whether or not to use max pooling rather than strided convolutions")
flags.DEFINE_bool("stop_grad", False,
                  "if True, do not use second derivatives in meta-optimization (for speed)")

## Logging, saving, and testing options
flags.DEFINE_bool("log", True, "if false, do not log summaries, for debugging code.")
flags.DEFINE_string("logdir", "/tmp/data", "directory for summaries and checkpoints.")
flags.DEFINE_bool("resume", True, "resume training if there is a model available")
flags.DEFINE_bool("train", True, "True to train, False to test.")
flags.DEFINE_integer("test_iter", -1, "iteration to load model (-1 for latest model)")
flags.DEFINE_bool("test_set", False,
                  "Set to true to test on the the test set, False for the validation set.")
flags.DEFINE_integer("train_update_batch_size", -1,
                     "number of examples used for gradient update during training "
                     "(use if you want to test with a different number).")
flags.DEFINE_float("train_update_lr", -1,
                   "value of inner gradient step step during training. "
                   "(use if you want to test with a different value)")  # 0.1 for omniglot

# ---- Additions of this project -------------------------------------------------------------
flags.DEFINE_integer("seed", 0, "seed of the weight initialisation and the training task "
                     "stream (the original left both unseeded); test mode uses the "
                     "original's test seeds unless --test_seed is given.")
flags.DEFINE_enum("xla", "auto", ["auto", "on", "off"],
                  "XLA-compile the gradient computations. auto: on for fully connected nets "
                  "(about 2x faster), off for conv nets (XLA convolutions are 5-50x slower "
                  "on CPU).")
flags.DEFINE_integer("steps_per_call", 0, "meta-iterations per TensorFlow call between the "
                     "summary/print/checkpoint points (speed only; results are the same). "
                     "0: 100 for the sinusoid, 1 for image classification.")
flags.DEFINE_integer("intra_op_threads", -1, "threads per TensorFlow kernel (speed only; "
                     "results are the same). -1: 1 for the sinusoid (its kernels are too "
                     "small to share) and with --task_groups above 1, TensorFlow's default "
                     "elsewhere; 0: TensorFlow's default (one per core); N: N.")
flags.DEFINE_integer("task_groups", -1, "compute the meta-batch's tasks in this many "
                     "independent groups, side by side on the CPU's cores (speed only; results "
                     "are the same up to float rounding). -1: two per core for conv nets on "
                     "CPU (with --intra_op_threads 1), 1 elsewhere; 1: one computation.")
flags.DEFINE_bool("factored_inner_step", True, "fully connected nets (the sinusoid, "
                  "--conv=False) with one inner step keep each task's adapted weights as the "
                  "factors of their gradient (maml_tf/factored.py; speed only: the same maths, "
                  "other float32 rounding). False: form the weights, as conv nets do (the "
                  "path of runs before session 18).")
flags.DEFINE_string("export_dir", "", "if set, export the trained (train mode) or restored "
                    "(test mode) meta-learner as a SavedModel to this directory.")
flags.DEFINE_integer("export_num_updates", -1, "inner steps performed inside the exported "
                     "adapt-and-predict function (-1: num_updates).")
flags.DEFINE_string("omniglot_folder", "./data/omniglot_resized",
                    "folder of 28x28 Omniglot images made by "
                    "`python -m data_generators.prepare_omniglot` (the original's path).")
flags.DEFINE_string("miniimagenet_folder", "./data/miniImagenet",
                    "folder with train/val/test made by "
                    "`python -m data_generators.prepare_miniimagenet` (the original's path).")
flags.DEFINE_integer("num_test_tasks", 600, "tasks evaluated in test mode (the original's "
                     "NUM_TEST_POINTS = 600).")
flags.DEFINE_integer("test_batch_size", 50, "test-mode tasks drawn and evaluated per call. "
                     "Sinusoid results do not depend on it; classification tasks draw their "
                     "label order (and Omniglot rotations) per call, so keep the default to "
                     "compare results.")
flags.DEFINE_bool("overwrite", False, "delete the run already in the experiment directory "
                  "(checkpoints, summaries, test results) and start again; without it, "
                  "--resume=False over existing checkpoints is refused.")
flags.DEFINE_integer("checkpoint_interval", 1000, "save a checkpoint every this many "
                     "iterations (the original's 1000).")
flags.DEFINE_float("checkpoint_minutes", 10.0, "also save when this many minutes have passed "
                   "since the last save, so a slow run never risks more (0: every iteration).")
flags.DEFINE_integer("test_seed", -1, "test mode: seed of the test tasks. -1 (default): the "
                     "original's (task list drawn after random.seed(6), sinusoid tasks and "
                     "per-task class orders from seed 1); N >= 0: all of them from N, and "
                     "'_testseed{N}' is added to the result file names.")
flags.DEFINE_enum("distribute", "none", ["none", "mirrored", "multi_worker"],
                  "training and testing on several devices with tf.distribute: none (one "
                  "device), mirrored (every local GPU, or --num_cpu_devices logical CPU "
                  "devices) or multi_worker (the processes of the TF_CONFIG environment "
                  "variable, one per host; the chief alone writes the run). The meta-batch "
                  "is split into equal shares and the update is the one-device update; test "
                  "tasks are split too.")
flags.DEFINE_integer("num_cpu_devices", 1, "--distribute=mirrored on a host without GPU: "
                     "logical CPU devices (replicas) to split the meta-batch across.")
flags.DEFINE_float("worker_timeout", 60.0, "--distribute=multi_worker: seconds to wait for "
                   "every task of TF_CONFIG to join, and after which a silent (dead) task ends "
                   "the others with an error.")


# ---- Validation -------------------------------------------------------------------------
for _name in ("num_classes", "meta_batch_size", "update_batch_size", "num_updates",
              "num_filters", "num_test_tasks", "test_batch_size"):
    flags.register_validator(_name, lambda v: v is not None and v >= 1,
                             message=f"--{_name} must be a positive integer")
for _name in ("pretrain_iterations", "metatrain_iterations"):
    flags.register_validator(_name, lambda v: v is not None and v >= 0,
                             message=f"--{_name} must be >= 0")
flags.register_validator("meta_lr", lambda v: math.isfinite(v) and v > 0,
                         message="--meta_lr must be > 0 and finite")
flags.register_validator("update_lr", lambda v: math.isfinite(v) and v > 0,
                         message="--update_lr must be > 0 and finite")
flags.register_validator("steps_per_call", lambda v: v is not None and v >= 0,
                         message="--steps_per_call must be >= 0 (0: automatic)")
flags.register_validator("intra_op_threads", lambda v: v is not None and v >= -1,
                         message="--intra_op_threads must be -1 (automatic), 0 (TensorFlow's "
                                 "default) or a positive integer")
flags.register_validator("task_groups", lambda v: v is not None and (v == -1 or v >= 1),
                         message="--task_groups must be -1 (automatic) or a positive integer")
flags.register_validator("checkpoint_interval", lambda v: v is not None and v >= 1,
                         message="--checkpoint_interval must be a positive integer")
flags.register_validator("checkpoint_minutes", lambda v: math.isfinite(v) and v >= 0,
                         message="--checkpoint_minutes must be >= 0 and finite")
flags.register_validator("train_update_batch_size", lambda v: v == -1 or v >= 1,
                         message="--train_update_batch_size must be -1 (same as "
                                 "--update_batch_size) or a positive integer")
flags.register_validator("train_update_lr", lambda v: v == -1 or (math.isfinite(v) and v > 0),
                         message="--train_update_lr must be -1 (same as --update_lr) or > 0 "
                                 "and finite")
flags.register_validator("test_seed", lambda v: v is not None and v >= -1,
                         message="--test_seed must be -1 (the original's seeds) or >= 0")
flags.register_validator("baseline", lambda v: v in (None, "None", "oracle"),
                         message="--baseline must be 'oracle' or left unset (None)")


@flags.multi_flags_validator(["baseline", "datasource"],
                             message="--baseline=oracle is only defined for "
                                     "--datasource=sinusoid (the oracle input is the "
                                     "sinusoid's amplitude and phase)")
def _oracle_only_for_sinusoid(values):
    return values["baseline"] != "oracle" or values["datasource"] == "sinusoid"


@flags.multi_flags_validator(["datasource", "num_classes", "update_batch_size", "train",
                              "train_update_batch_size"],
                             message="Omniglot has 20 drawings per character: K support + "
                                     "K query images per class needs --update_batch_size "
                                     "(and --train_update_batch_size) <= 10")
def _omniglot_shots(values):
    if values["datasource"] != "omniglot":
        return True
    ks = [values["update_batch_size"], values["train_update_batch_size"]]
    return all(k <= 10 for k in ks if k and k > 0)


@flags.multi_flags_validator(["distribute", "num_cpu_devices", "meta_batch_size", "train",
                              "worker_timeout"])
def _distribution_usable(values):
    # Equal shares are what make the mean of the replicas' mean losses the one-device loss.
    count = values["num_cpu_devices"]
    if count is None or count < 1:
        raise flags.ValidationError(f"--num_cpu_devices must be >= 1, got {count}")
    if values["distribute"] != "mirrored" and count != 1:
        raise flags.ValidationError(f"--num_cpu_devices={count} needs --distribute=mirrored")
    replicas, what = count, f"--num_cpu_devices={count}"
    if values["distribute"] == "multi_worker":
        timeout = values["worker_timeout"]
        if not (math.isfinite(timeout) and timeout > 0):
            raise flags.ValidationError(f"--worker_timeout must be > 0 and finite, got "
                                        f"{timeout}")
        from maml_tf.cluster import parse_tf_config   # TF_CONFIG is read at this edge too
        from maml_tf.distribute import DistributeError
        try:
            cluster = parse_tf_config(os.environ.get("TF_CONFIG"))
        except DistributeError as error:
            raise flags.ValidationError(str(error))
        replicas, what = cluster.num_workers, f"the {cluster.num_workers} workers of TF_CONFIG"
    if values["train"] and values["meta_batch_size"] % replicas:
        raise flags.ValidationError(
            f"--meta_batch_size={values['meta_batch_size']} is not divisible by "
            f"{what}: every replica needs the same number of tasks")
    return True


@flags.multi_flags_validator(["test_seed", "train"],
                             message="--test_seed only applies to test mode (--train=False); "
                                     "training and its validation batches keep their seeds")
def _test_seed_only_when_testing(values):
    return values["test_seed"] == -1 or not values["train"]


# Classes per split: training also draws validation tasks, so it needs both splits.
_SPLIT_CLASSES = {"omniglot": {"train": 1100, "val": 100, "test": 423},
                  "miniimagenet": {"train": 64, "val": 16, "test": 20}}


@flags.multi_flags_validator(["datasource", "num_classes", "train", "test_set"],
                             message="--num_classes is larger than the classes a split can "
                                     "supply: Omniglot has 1100 train / 100 val / 423 test "
                                     "characters, MiniImagenet 64 / 16 / 20 classes")
def _classes_available(values):
    splits = _SPLIT_CLASSES.get(values["datasource"])
    if splits is None:
        return True
    if values["train"]:
        used = ("train", "val")
    else:
        used = ("test",) if values["test_set"] else ("val",)
    return values["num_classes"] <= min(splits[s] for s in used)


@flags.multi_flags_validator(["datasource", "update_batch_size", "train"],
                             message="MiniImagenet has 600 images per class: K+15 (training) "
                                     "or 2K (testing) images per class must fit")
def _miniimagenet_shots(values):
    if values["datasource"] != "miniimagenet":
        return True
    k = values["update_batch_size"]
    return k + 15 <= 600 and 2 * k <= 600


@flags.validator("logdir", message="--logdir must be a directory this process can create "
                                    "and write to")
def _logdir_writable(path):
    # Creating it is harmless: every run writes its experiment directory there anyway.
    if not path:
        return False
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


common.register_export_dir_validator()
common.define_experiment_flags(("supervised", "import"))


def config_from_flags():
    """The flag values as an :class:`~maml_tf.config.ExperimentConfig` (plain values)."""
    from maml_tf.config import ExperimentConfig  # local: keep flag definition import-light

    baseline = FLAGS.baseline if FLAGS.baseline not in (None, "None") else None
    return ExperimentConfig(
        datasource=FLAGS.datasource, num_classes=FLAGS.num_classes, baseline=baseline,
        pretrain_iterations=FLAGS.pretrain_iterations,
        metatrain_iterations=FLAGS.metatrain_iterations,
        meta_batch_size=FLAGS.meta_batch_size, meta_lr=FLAGS.meta_lr,
        update_batch_size=FLAGS.update_batch_size, update_lr=FLAGS.update_lr,
        num_updates=FLAGS.num_updates, norm=FLAGS.norm, num_filters=FLAGS.num_filters,
        conv=FLAGS.conv, max_pool=FLAGS.max_pool, stop_grad=FLAGS.stop_grad, log=FLAGS.log,
        logdir=FLAGS.logdir, resume=FLAGS.resume, train=FLAGS.train, test_iter=FLAGS.test_iter,
        test_set=FLAGS.test_set, train_update_batch_size=FLAGS.train_update_batch_size,
        train_update_lr=FLAGS.train_update_lr, seed=FLAGS.seed, xla=FLAGS.xla,
        steps_per_call=FLAGS.steps_per_call, intra_op_threads=FLAGS.intra_op_threads,
        task_groups=FLAGS.task_groups, factored_inner_step=FLAGS.factored_inner_step,
        export_dir=FLAGS.export_dir, export_num_updates=FLAGS.export_num_updates,
        omniglot_folder=FLAGS.omniglot_folder, miniimagenet_folder=FLAGS.miniimagenet_folder,
        num_test_tasks=FLAGS.num_test_tasks, test_batch_size=FLAGS.test_batch_size,
        overwrite=FLAGS.overwrite, checkpoint_interval=FLAGS.checkpoint_interval,
        checkpoint_minutes=FLAGS.checkpoint_minutes,
        test_seed=FLAGS.test_seed, distribute=FLAGS.distribute,
        num_cpu_devices=FLAGS.num_cpu_devices, worker_timeout=FLAGS.worker_timeout)


def explicit_flags() -> set:
    """Names of the flags the command line gave (an --experiment preset's count as given):
    test mode takes the others from the run's record."""
    return {name for name in FLAGS if FLAGS[name].present}
