"""Export a trained meta-learner as a self-contained SavedModel.

The exported ``adapt_and_predict`` signature takes one task's support set and query inputs,
performs the inner SGD steps *inside the graph* (a GradientTape in the exported function) and
returns predictions on the query inputs; ``predict`` applies the meta-learned weights without
adaptation. The SavedModel needs only TensorFlow to load: none of this project's code. The
number of inner steps and the step size are fixed at export time (a trace-time Python int).
"""
from __future__ import annotations

import tensorflow as tf

from maml_tf import maml
from maml_tf.maml import InnerLoopSpec


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
        forward = model.functional_forward
        dtype = model.dtype

        def current():
            return ({n: v[None] for n, v in self.adapted.items()},
                    {n: tf.convert_to_tensor(v) for n, v in self.shared.items()})

        @tf.function(input_signature=[
            tf.TensorSpec([None, model.dim_input], dtype, name="support_inputs"),
            tf.TensorSpec([None, model.dim_output], dtype, name="support_labels"),
            tf.TensorSpec([None, model.dim_input], dtype, name="query_inputs")])
        def adapt_and_predict(support_inputs, support_labels, query_inputs):
            params, shared = current()
            trajectory, _, _ = maml.adapt(model, params, shared, support_inputs[None],
                                          support_labels[None], spec, num_steps)
            return {"predictions": forward(trajectory[-1], query_inputs[None], shared)[0]}

        @tf.function(input_signature=[tf.TensorSpec([None, model.dim_input], dtype,
                                                     name="inputs")])
        def predict(inputs):
            params, shared = current()
            return {"predictions": forward(params, inputs[None], shared)[0]}

        self.adapt_and_predict = adapt_and_predict
        self.predict = predict


def export_saved_model(model, spec: InnerLoopSpec, num_steps: int, export_dir: str) -> str:
    """Writes the SavedModel; returns ``export_dir``."""
    if num_steps < 1:
        raise ValueError(f"the exported function needs at least one inner step, got {num_steps}")
    module = _ExportedMetaLearner(model, spec, num_steps)
    tf.saved_model.save(module, export_dir, signatures={
        "adapt_and_predict": module.adapt_and_predict, "predict": module.predict})
    return export_dir
