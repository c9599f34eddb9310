"""Export a trained meta-learner as a self-contained SavedModel.

The exported ``adapt_and_predict`` signature takes one task's support set and query inputs,
performs the inner SGD steps *inside the graph* (a GradientTape in the exported function) and
returns predictions on the query inputs; ``predict`` applies the meta-learned weights without
adaptation. The SavedModel needs only TensorFlow to load: none of this project's code. The
number of inner steps and the step size are fixed at export time (a trace-time Python int).

The signatures check their inputs inside the graph (shape, matching example counts, a
non-empty support set) and fail with a message naming the argument: a SavedModel is used far
from this code, where an error deep inside a matmul explains nothing. A SavedModel is written
to a temporary folder beside the target and renamed into place, so an interrupted export
never leaves half a model, and re-exporting replaces the previous one whole.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf

from maml_tf import maml
from maml_tf.maml import InnerLoopSpec
from maml_tf.run_folder import export_dir_problem


class ExportError(ValueError):
    """The SavedModel cannot be written where asked."""


def checked_rows(tensor, name: str, width: int, allow_empty: bool = False):
    """``tensor`` after in-graph checks that it is ``[n, width]``, with n >= 1 unless
    ``allow_empty`` (an empty support set would silently give unadapted predictions); the
    error names the signature argument."""
    shape = tf.shape(tensor)
    checks = [
        tf.debugging.assert_equal(tf.rank(tensor), 2, message=f"{name} must be a matrix "
                                  f"[n, {width}]"),
        tf.debugging.assert_equal(shape[-1], width, message=f"{name} must have {width} "
                                  f"columns ([n, {width}])"),
    ]
    if not allow_empty:
        checks.append(tf.debugging.assert_positive(
            shape[0], message=f"{name} must hold at least one row"))
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def same_rows(first, first_name: str, second, second_name: str):
    """``second`` after an in-graph check that it has as many rows as ``first``."""
    check = tf.debugging.assert_equal(
        tf.shape(first)[0], tf.shape(second)[0],
        message=f"{first_name} and {second_name} must have the same number of rows")
    with tf.control_dependencies([check]):
        return tf.identity(second)


def save_replacing(module: tf.Module, export_dir: str, signatures: dict) -> str:
    """Writes ``module`` as a SavedModel at ``export_dir`` (replacing an earlier SavedModel
    there) through a temporary sibling folder; errors name the path."""
    problem = export_dir_problem(export_dir)
    if problem:
        raise ExportError(problem)
    target = os.path.abspath(export_dir)
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    except OSError as error:
        raise ExportError(f"cannot write in {parent}: {error.strerror or error}") from None
    try:
        tf.saved_model.save(module, temporary, signatures=signatures)
        if os.path.isdir(target):
            previous = temporary + "-previous"
            os.replace(target, previous)
            os.replace(temporary, target)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(temporary, target)
    except (tf.errors.OpError, OSError) as error:
        shutil.rmtree(temporary, ignore_errors=True)
        reason = getattr(error, "message", None) or getattr(error, "strerror", None) or error
        raise ExportError(f"could not write the SavedModel {export_dir}: "
                          f"{str(reason).strip().splitlines()[0][:200]}") from None
    return export_dir


def frozen_copies(variables: dict) -> dict:
    """Non-trainable plain tf.Variables holding the current values of ``variables`` (name ->
    Keras or TF variable), so a SavedModel holds no Keras objects; the architecture is
    captured by tracing a functional forward pass. Shared with the RL policy export."""
    return {name: tf.Variable(tf.convert_to_tensor(variable), trainable=False,
                              name=name.replace("/", "_"))
            for name, variable in variables.items()}


class _ExportedMetaLearner(tf.Module):
    def __init__(self, model, spec: InnerLoopSpec, num_steps: int):
        super().__init__(name="maml_meta_learner")
        self.adapted = frozen_copies(model.adapted)
        self.shared = frozen_copies(model.shared)
        # Recorded for users of the SavedModel (variables, so they are saved); the traced
        # graph itself uses the Python values.
        self.update_lr = tf.Variable(spec.update_lr, dtype=model.dtype, trainable=False)
        self.num_steps = tf.Variable(num_steps, dtype=tf.int32, trainable=False)
        forward = model.forward
        dtype = model.dtype

        def current():
            return ({n: v[None] for n, v in self.adapted.items()},
                    {n: tf.convert_to_tensor(v) for n, v in self.shared.items()})

        @tf.function(input_signature=[
            tf.TensorSpec([None, model.dim_input], dtype, name="support_inputs"),
            tf.TensorSpec([None, model.dim_output], dtype, name="support_labels"),
            tf.TensorSpec([None, model.dim_input], dtype, name="query_inputs")])
        def adapt_and_predict(support_inputs, support_labels, query_inputs):
            support_inputs = checked_rows(support_inputs, "support_inputs", model.dim_input)
            support_labels = same_rows(support_inputs, "support_inputs", checked_rows(
                support_labels, "support_labels", model.dim_output), "support_labels")
            query_inputs = checked_rows(query_inputs, "query_inputs", model.dim_input,
                                        allow_empty=True)
            params, shared = current()
            trajectory, _, _ = maml.adapt(model, params, shared, support_inputs[None],
                                          support_labels[None], spec, num_steps)
            return {"predictions": forward(query_inputs[None], params=trajectory[-1], shared=shared)[0]}

        @tf.function(input_signature=[tf.TensorSpec([None, model.dim_input], dtype,
                                                     name="inputs")])
        def predict(inputs):
            inputs = checked_rows(inputs, "inputs", model.dim_input, allow_empty=True)
            params, shared = current()
            return {"predictions": forward(inputs[None], params=params, shared=shared)[0]}

        self.adapt_and_predict = adapt_and_predict
        self.predict = predict


def export_saved_model(model, spec: InnerLoopSpec, num_steps: int, export_dir: str) -> str:
    """Writes the SavedModel; returns ``export_dir``."""
    if num_steps < 1:
        raise ValueError(f"the exported function needs at least one inner step, got {num_steps}")
    module = _ExportedMetaLearner(model, spec, num_steps)
    return save_replacing(module, export_dir, signatures={
        "adapt_and_predict": module.adapt_and_predict, "predict": module.predict})
