"""MAML's one-step inner loop for fully connected nets, each task's adapted weights kept as
the factors of their gradient.

Why: a dense layer's gradient on a task's support set is a sum of outer products,
``dL/dW = x^T delta``, with ``x`` the layer's K support inputs [K, i] and ``delta`` the loss's
gradient with respect to its pre-activations [K, o]. After one step the task's weight is
``W - alpha x^T delta``, and its pre-activations on query inputs ``h`` are

    h (W - alpha x^T delta) = h W - alpha (h x^T) delta

that is one product with the shared ``W`` for all tasks at once, plus two small per-task
products through the [Q, K] Gram matrix ``h x^T``. The generic path
(:func:`maml_tf.core.gradient_update`) materialises the [T, i, o] per-task weights; the
sinusoid's second-order meta-gradient then runs twelve batched products of that size for its
40 x 40 layer (forward, backward and their second-order terms), eight of them in the
transposed forms XLA's CPU batched dot runs 2-3x slower (docs/RESULTS.md, session 18).
Same maths; the values differ by float rounding only (``tests/test_factored.py`` holds the
meta-gradients to the generic path's, and ``tests/test_maml_math.py``'s finite-difference
checks run through this path).

The ``delta`` factors come from autodiff: a zero offset added to each layer's pre-activations
has the loss's gradient with respect to those pre-activations as its gradient. A layer whose
support set is at least as large as its narrower side (the sinusoid's 1 x 40 and 40 x 1
layers: K = 10) gains nothing from factors, so its per-task weight is formed from them as the
generic path forms it.

Only one inner step (the training setting of every fully connected preset): after more steps
the factors pile up, and the generic path serves.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from maml_tf import core


def applies(model, num_updates: int) -> bool:
    """Whether :func:`one_step` can run this model's inner loop of ``num_updates`` steps."""
    return (num_updates == 1 and getattr(model, "factored_inner_step", False)
            and hasattr(model, "forward_layers"))


def _shared_product(hidden, weight):
    """[T, N, i] x [i, o] as one [T * N, i] x [i, o] product (one weight for every task)."""
    shape = tf.shape(hidden)
    flat = tf.matmul(tf.reshape(hidden, [-1, hidden.shape[-1]]), weight)
    return tf.reshape(flat, tf.concat([shape[:-1], [weight.shape[-1]]], axis=0))


def _factored(weight, support_examples) -> bool:
    """Whether a layer's adapted weight stays as factors: rank K below the weight's."""
    return support_examples is not None and support_examples < min(weight.shape)


def one_step(model, shared, inputa, inputb, support_losses: Callable, step_size,
             first_order: bool = False):
    """One inner SGD step of every task on ``inputa``, then the adapted net on ``inputb``.

    ``support_losses(predictions)`` returns the per-task support losses [T] (summed for the
    gradient, as :func:`maml_tf.core.gradient_update`); ``first_order`` stops the gradient
    through the inner gradient. Returns (support losses and predictions before the step,
    query predictions after it): what the generic path computes, the same values up to float
    rounding. Must run under the caller's outer tape for the meta-gradient.

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> from maml_tf import core
        >>> from maml_tf.factored import one_step
        >>> from maml_tf.models import FullyConnectedNet
        >>> model = FullyConnectedNet(1, 1, (40, 40))
        >>> inputa, labela, inputb = tf.ones([2, 5, 1]), tf.ones([2, 5, 1]), tf.ones([2, 7, 1])
        >>> losses = lambda predictions: tf.reduce_mean(tf.square(predictions - labela), [1, 2])
        >>> pre_losses, _, predictions_b = one_step(model, model.shared_parameters(), inputa,
        ...                                         inputb, losses, step_size=0.01)
        >>> pre_losses.shape, predictions_b.shape
        (TensorShape([2]), TensorShape([2, 7, 1]))
        >>> fast, _ = core.gradient_update(lambda p: losses(model.forward(inputa, params=p)),
        ...                                model.tiled_parameters(2), 0.01)   # the generic path
        >>> np.allclose(predictions_b, model.forward(inputb, params=fast), atol=1e-6)
        True
    """
    params = model.meta_parameters()
    num_tasks = tf.shape(inputa)[0]
    support_examples = inputa.shape[1]
    inputs, offsets = {}, {}

    with tf.GradientTape() as tape:
        def support_affine(layer, hidden):
            weight = params[f"w{layer}"]
            inputs[layer] = hidden
            if _factored(weight, support_examples):
                out = _shared_product(hidden, weight)
            else:
                out = tf.matmul(hidden, core.tile(weight, num_tasks))
            if model.layer_has_bias(layer):
                out = out + params[f"b{layer}"]
            offsets[layer] = tf.zeros_like(out)
            tape.watch(offsets[layer])
            return out + offsets[layer]

        predictions_a = model.forward_layers(inputa, support_affine, shared)
        pre_losses = support_losses(predictions_a)
    deltas = tape.gradient(pre_losses, offsets)
    if first_order:
        inputs = {layer: tf.stop_gradient(x) for layer, x in inputs.items()}
        deltas = {layer: tf.stop_gradient(d) for layer, d in deltas.items()}

    def query_affine(layer, hidden):
        weight, x, delta = params[f"w{layer}"], inputs[layer], deltas[layer]
        if _factored(weight, support_examples):
            gram = tf.matmul(hidden, x, transpose_b=True)              # [T, Q, K]
            out = _shared_product(hidden, weight) - step_size * tf.matmul(gram, delta)
        else:
            fast = weight - step_size * tf.matmul(x, delta, transpose_a=True)  # [T, i, o]
            out = tf.matmul(hidden, fast)
        if model.layer_has_bias(layer):
            fast_bias = params[f"b{layer}"] - step_size * tf.reduce_sum(delta, axis=1)
            out = out + fast_bias[:, None, :]
        return out

    predictions_b = model.forward_layers(inputb, query_affine, shared)
    return pre_losses, predictions_a, predictions_b
