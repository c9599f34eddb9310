"""Import a checkpoint written by the original TF1 code (cbfinn/maml) as this project's.

Why: weights trained with the authors' code (among them the MiniImagenet 5-way 1-shot
checkpoint the authors released) can then go through this project's own test mode, export
and comparison, which tests the model and the test protocol separately from training.

The original saved only its trainable variables (``tf.train.Saver(TRAINABLE_VARIABLES)``),
under the names TF1 gave them inside ``tf.variable_scope('model')``:

- conv nets: ``model/conv1..4`` (kernels, HWIO as here); the biases were unnamed
  ``tf.Variable`` s, so they are ``model/Variable``, ``model/Variable_1`` .. ``_3`` (b1..b4);
  the head ``model/w5``, ``model/b5``. The MiniImagenet head flattens the last [5, 5, C]
  activation of each example in NHWC order (height, width, channel), which is also this
  project's flatten order (``reshape`` of [tasks, batch, H, W, C]), so ``w5`` is copied
  without a permutation (``tests/test_tf1_import.py`` checks this against a TF1 graph).
- fully connected nets (sinusoid, ``--conv=False``): every weight and bias is an unnamed
  ``tf.Variable`` created in the order w1, b1, w2, b2, ..., so w_i is
  ``model/Variable_{2(i-1)}`` and b_i ``model/Variable_{2i-1}``. Checkpoints of modified
  code that named them ``model/w1``, ``model/b1`` .. are accepted too.
- normalisation (``tf.contrib.layers.batch_norm`` / ``layer_norm``, offset ``beta``, layer norm
  also ``gamma``): the scope is ``model/<i>/`` with i = 0..3 for the conv blocks and, a quirk
  of the original's ``forward_fc``, i = 0, 2, 3, ... for the hidden layers of an FC net.

Batch-norm moving statistics (never used: the original normalises with batch statistics, also
at test time) and Adam's slots and ``beta1_power``/``beta2_power`` (present only when a fork
saved every variable) are skipped and reported; any other variable, a missing one, a shape or
a non-float dtype is an error naming the variable. The optimizer state of the new checkpoint
is a fresh Adam, as when the original resumed (its Saver did not save Adam's state either).
"""
from __future__ import annotations

import glob
import os
import re
from typing import Optional

import numpy as np
import tensorflow as tf

from maml_tf import run_folder
from maml_tf.checkpoint import CheckpointError, IterationCheckpointer
from maml_tf.config import ExperimentConfig
from maml_tf.experiment import build_learner
from maml_tf.models import ConvNet, FullyConnectedNet, MetaModel
from maml_tf.sources import ModelShape

SCOPE = "model/"
# Flags that decide the architecture: named when a checkpoint does not fit it.
MODEL_FLAGS = ("--datasource", "--num_classes", "--conv", "--num_filters", "--max_pool",
               "--norm", "--baseline")
_SKIPPED_TOP_LEVEL = ("beta1_power", "beta2_power")  # TF1 Adam's accumulators


def _unnamed(index: int) -> str:
    """TF1's name for the ``index``-th unnamed ``tf.Variable`` created in the scope."""
    return f"{SCOPE}Variable" if index == 0 else f"{SCOPE}Variable_{index}"


def _norm_names(model: MetaModel, layer: int, tf1_scope: str) -> dict[str, str]:
    names = {}
    if model.norm in ("batch_norm", "layer_norm"):
        names[f"norm{layer}_offset"] = f"{SCOPE}{tf1_scope}/beta"
    if model.norm == "layer_norm":
        names[f"norm{layer}_scale"] = f"{SCOPE}{tf1_scope}/gamma"
    return names


def _norm_scopes(model: MetaModel) -> list[str]:
    """The original's normalisation scope of each hidden layer (see the module docstring)."""
    if isinstance(model, ConvNet):
        return [str(i) for i in range(4)]
    return ["0"] + [str(j) for j in range(2, len(model.dim_hidden) + 1)]


def original_names(model: MetaModel, named_fc: bool = False) -> dict[str, str]:
    """{this project's weight name: the original's checkpoint name} for every weight.

    ``named_fc``: the FC layout of modified code (``model/w1``, ``model/b1``, ..).
    """
    if isinstance(model, ConvNet):
        names = {}
        for i in range(1, 5):
            names[f"conv{i}"] = f"{SCOPE}conv{i}"
            names[f"b{i}"] = _unnamed(i - 1)
        names["w5"], names["b5"] = f"{SCOPE}w5", f"{SCOPE}b5"
    elif isinstance(model, FullyConnectedNet):
        names = {}
        for i in range(1, len(model.dim_hidden) + 2):
            names[f"w{i}"] = f"{SCOPE}w{i}" if named_fc else _unnamed(2 * (i - 1))
            names[f"b{i}"] = f"{SCOPE}b{i}" if named_fc else _unnamed(2 * i - 1)
    else:
        raise TypeError(f"no TF1 layout known for {type(model).__name__}")
    for layer, scope in enumerate(_norm_scopes(model), start=1):
        names.update(_norm_names(model, layer, scope))
    unmapped = (set(model.adapted) | set(model.shared)) - set(names)
    if unmapped:  # a weight added to the models without its TF1 name here
        raise TypeError(f"no TF1 name for {sorted(unmapped)} of {type(model).__name__}")
    return names


def _skippable(name: str, mapped: set[str], model: MetaModel) -> bool:
    """Variables a TF1 run may have saved that carry nothing the test mode uses."""
    if name in _SKIPPED_TOP_LEVEL:
        return True
    for suffix in ("/Adam", "/Adam_1"):
        if name.endswith(suffix) and name[:-len(suffix)] in mapped:
            return True
    return any(name == f"{SCOPE}{scope}/{stat}" for scope in _norm_scopes(model)
               for stat in ("moving_mean", "moving_variance"))


def check_prefix(prefix: str) -> str:
    """``prefix`` if it names a TF1 checkpoint (``PREFIX.index`` beside its data files)."""
    if not prefix:
        raise CheckpointError("--tf1_checkpoint is empty; pass a checkpoint prefix such as "
                              "logs/.../model59000")
    if prefix.endswith(".index") or ".data-" in os.path.basename(prefix):
        stem = prefix[:-len(".index")] if prefix.endswith(".index") else prefix.split(".data-")[0]
        raise CheckpointError(f"--tf1_checkpoint={prefix!r} is one of the checkpoint's files; "
                              f"pass the prefix without the suffix: {stem}")
    if os.path.isdir(prefix):
        found = sorted(p[:-len(".index")] for p in glob.glob(os.path.join(prefix, "*.index")))
        raise CheckpointError(f"--tf1_checkpoint={prefix!r} is a directory; pass the prefix "
                              f"of one checkpoint in it: {', '.join(found) or '(none found)'}")
    if not os.path.exists(prefix + ".index"):
        raise CheckpointError(f"--tf1_checkpoint={prefix!r}: no checkpoint there "
                              f"({prefix}.index does not exist)")
    return prefix


def iteration_from_prefix(prefix: str) -> int:
    """The iteration in the original's file name ``model{itr}``."""
    match = re.fullmatch(r"model(\d+)", os.path.basename(prefix))
    if not match:
        raise CheckpointError(f"cannot read the iteration from {os.path.basename(prefix)!r} "
                              f"(the original names checkpoints model{{itr}}); pass "
                              f"--tf1_iteration")
    return int(match.group(1))


def load_into_model(model: MetaModel, prefix: str, log=print) -> dict:
    """Assigns the TF1 checkpoint's values to ``model``'s weights, after checking them all.

    Nothing is assigned unless every weight is found with its exact shape and a float dtype
    and no variable is left unexplained. Returns {"assigned": {ours: tf1}, "skipped": [...]}.
    """
    reader = tf.train.load_checkpoint(check_prefix(prefix))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    named_fc = isinstance(model, FullyConnectedNet) and f"{SCOPE}w1" in shapes
    names = original_names(model, named_fc)
    weights = {**model.adapted, **model.shared}
    problems = []
    for ours, theirs in names.items():
        expected = list(weights[ours].shape)
        if theirs not in shapes:
            problems.append(f"{theirs} (for {ours}, shape {expected}) is missing")
        elif list(shapes[theirs]) != expected:
            problems.append(f"{theirs} has shape {list(shapes[theirs])} but {ours} needs "
                            f"{expected}")
        elif not dtypes[theirs].is_floating:
            problems.append(f"{theirs} has dtype {dtypes[theirs].name}, not a float")
    mapped = set(names.values())
    unmatched = sorted(n for n in shapes if n not in mapped and not _skippable(n, mapped, model))
    for name in unmatched:
        problems.append(f"{name} {list(shapes[name])} matches no weight of this model")
    if problems:
        raise CheckpointError(
            f"{prefix} does not fit the {type(model).__name__} built from these flags:\n  "
            + "\n  ".join(problems) + f"\nPass the flags the checkpoint was trained with "
            f"({', '.join(MODEL_FLAGS)}). The model built from these flags has:\n"
            + model.weights_table())
    for ours, theirs in names.items():
        weights[ours].assign(np.asarray(reader.get_tensor(theirs), dtype=model.dtype))
    skipped = sorted(n for n in shapes if n not in mapped)
    if skipped:
        log(f"Skipped {len(skipped)} variables the test mode does not use (batch-norm moving "
            f"statistics, Adam state): {', '.join(skipped)}")
    return {"assigned": names, "skipped": skipped}


def import_checkpoint(cfg: ExperimentConfig, prefix: str, dimensions: ModelShape,
                      iteration: Optional[int] = None, log=print) -> str:
    """Writes ``<logdir>/<experiment>/ckpt-<iteration>`` from the TF1 checkpoint ``prefix``.

    ``cfg`` gives the architecture and the experiment directory (the original's flags of the
    run); ``dimensions`` the model's sizes, given by the entry point from the data layer
    (``data_generators.factory.model_dimensions``); ``iteration`` defaults to the one in the
    file name. Refuses a directory that already holds checkpoints, so an imported model is
    never mixed with a trained run (test mode and ``--resume`` take the latest one). Returns
    the new checkpoint's path.
    """
    check_prefix(prefix)
    if iteration is None or iteration < 0:
        iteration = iteration_from_prefix(prefix)
    _refuse_existing_run(cfg.experiment_dir)
    learner = build_learner(cfg, dimensions)
    result = load_into_model(learner.model, prefix, log)
    # Only now, with everything checked, the directory is created; under the run-folder lock
    # so a trainer starting in it at the same moment cannot interleave its checkpoints.
    with run_folder.RunLock(cfg.experiment_dir, log):
        _refuse_existing_run(cfg.experiment_dir)
        path = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                     optimizer=learner.optimizer).save(iteration)
    log(f"Imported {len(result['assigned'])} variables of {prefix} into {path} "
        f"(iteration {iteration})")
    return path


def _refuse_existing_run(directory: str) -> None:
    existing = run_folder.checkpoint_iterations(directory)
    if existing:
        raise CheckpointError(
            f"{directory} already holds checkpoints "
            f"({', '.join(f'ckpt-{i}' for i in existing)}); import into a fresh --logdir")
