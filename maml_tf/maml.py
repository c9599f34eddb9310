"""The supervised MAML algorithm as pure functions of (model weights, task batch).

The inner step itself (tiling, one SGD step, ``adapt``) is :mod:`maml_tf.core`, shared with
the RL policy; this module adds the original's supervised losses and metrics around it.

Everything here is a function of tensors: it never touches data sets, flags or files, so a
``tf.distribute`` strategy can later call :func:`meta_gradients` per replica on a shard of the
meta-batch and all-reduce the result.

Conventions of the original code kept here:
- per-task loss: mean squared error for regression; for classification the softmax
  cross-entropy of each example divided by K (``update_batch_size``), *summed* over the set;
- inner step: ``fast = weights - update_lr * grad`` (plain SGD) on the support set ``a``,
  repeated ``num_updates`` times; ``first_order`` (``--stop_grad``) stops the gradient
  through the inner gradients;
- meta-objective: the query (``b``) loss after the last inner step, averaged over tasks;
- reported values: the pre-update loss/accuracy is on the support set before adaptation, the
  post-update ones on the query set after each step.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from maml_tf import core, factored


@dataclasses.dataclass(frozen=True)
class InnerLoopSpec:
    """What the inner loop needs to know; a plain value so it can be built from flags.

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.maml import InnerLoopSpec, evaluate_adaptation
        >>> from maml_tf.models import FullyConnectedNet
        >>> spec = InnerLoopSpec(update_lr=0.01, num_updates=1, classification=False)  # sinusoid
        >>> batch = (tf.ones([2, 5, 1]), tf.zeros([2, 5, 1]),      # inputa, labela (support)
        ...          tf.ones([2, 5, 1]), tf.zeros([2, 5, 1]))      # inputb, labelb (query)
        >>> evaluate_adaptation(FullyConnectedNet(1, 1), batch, spec, num_steps=3)["losses"].shape
        TensorShape([2, 4])
    """

    update_lr: float
    num_updates: int
    classification: bool
    update_batch_size: int = 1  # K: the classification loss is divided by it
    first_order: bool = False


def task_losses(predictions, labels, spec: InnerLoopSpec):
    """Per-task losses [T] as the original: MSE, or sum over examples of cross-entropy / K."""
    if spec.classification:
        xent = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=predictions)
        return tf.reduce_sum(xent, axis=1) / tf.cast(spec.update_batch_size, xent.dtype)
    return tf.reduce_mean(tf.square(predictions - labels), axis=[1, 2])


def task_accuracies(predictions, labels):
    """Per-task accuracy [T]: fraction of examples whose argmax matches the one-hot label."""
    correct = tf.equal(tf.argmax(predictions, -1), tf.argmax(labels, -1))
    return tf.reduce_mean(tf.cast(correct, predictions.dtype), axis=1)


def support_loss(model, shared, inputs, labels, spec: InnerLoopSpec):
    """``params -> (task losses [T], predictions)`` on one set: the inner loop's loss."""
    def loss(params):
        predictions = model.forward(inputs, params=params, shared=shared)
        return task_losses(predictions, labels, spec), predictions
    return loss


def inner_step(model, params, shared, inputa, labela, spec: InnerLoopSpec):
    """One SGD step of every task at once (:func:`maml_tf.core.gradient_update`).

    Returns (fast_params, support_losses [T], support_predictions) before the step.
    """
    fast, (losses, predictions) = core.gradient_update(
        support_loss(model, shared, inputa, labela, spec), params, spec.update_lr,
        spec.first_order, has_aux=True)
    return fast, losses, predictions


def adapt(model, params, shared, inputa, labela, spec: InnerLoopSpec, num_steps: int):
    """``num_steps`` inner steps on the support set (:func:`maml_tf.core.adapt`).

    Returns (list of fast params after each step, support losses and support predictions of
    the unadapted params).
    """
    loss = support_loss(model, shared, inputa, labela, spec)
    trajectory, (pre_losses, pre_predictions) = core.adapt(
        lambda p, step: loss(p), params, num_steps, spec.update_lr, spec.first_order,
        has_aux=True)
    return trajectory, pre_losses, pre_predictions


def split_tasks(batch, task_groups: int) -> list:
    """``batch`` (tensors with a leading task axis) cut into ``task_groups`` consecutive
    groups of tasks, as even as possible; one group when the task count is not static.

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.maml import split_tasks
        >>> inputa, labela = tf.zeros([8, 5, 1]), tf.zeros([8, 5, 1])     # 8 tasks
        >>> [inputs.shape[0] for inputs, labels in split_tasks((inputa, labela), 3)]
        [3, 3, 2]
    """
    num_tasks = batch[0].shape[0]
    if task_groups <= 1 or num_tasks is None or num_tasks < 2:
        return [tuple(batch)]
    groups = min(task_groups, num_tasks)
    sizes = [num_tasks // groups + (1 if g < num_tasks % groups else 0) for g in range(groups)]
    return list(zip(*(tf.split(x, sizes, axis=0) for x in batch)))


def over_task_groups(per_task_fn, batch, task_groups: int = 1) -> dict:
    """``per_task_fn(sub_batch)`` (a dict of tensors with a leading task axis) on each group
    of :func:`split_tasks`, the results concatenated back in task order.

    Why: tasks never interact, so the groups are independent computations that TensorFlow's
    executor runs side by side (one per inter-op thread). On a CPU, small convolutions split
    poorly over cores inside one kernel; several groups of tasks, each kernel on one core, keep
    every core busy (docs/RESULTS.md "Speed", session 10). The values are the ungrouped
    ones (up to float rounding): only the order of the work changes.
    """
    parts = [per_task_fn(part) for part in split_tasks(batch, task_groups)]
    if len(parts) == 1:
        return parts[0]
    return {name: tf.concat([part[name] for part in parts], axis=0) for name in parts[0]}


def _set_values(prefix: str, predictions, labels, spec: InnerLoopSpec) -> dict:
    """Per-task ``{prefix}_loss`` and, for classification, ``{prefix}_accuracy`` on one set."""
    values = {f"{prefix}_loss": task_losses(predictions, labels, spec)}
    if spec.classification:
        values[f"{prefix}_accuracy"] = task_accuracies(predictions, labels)
    return values


def task_objectives(model, batch, spec: InnerLoopSpec) -> dict:
    """Per-task values [T] of one meta-training step: the query loss after
    ``spec.num_updates`` inner steps (``post_loss``, the meta-objective's terms), the support
    loss before adaptation (``pre_loss``) and, for classification, both accuracies."""
    inputa, labela, inputb, labelb = batch
    shared = model.shared_parameters()
    if factored.applies(model, spec.num_updates):   # the same values, faster
        pre_losses, predictions_a, predictions_b = factored.one_step(
            model, shared, inputa, inputb, lambda p: task_losses(p, labela, spec),
            spec.update_lr, spec.first_order)
    else:
        params = model.tiled_parameters(tf.shape(inputa)[0])
        trajectory, pre_losses, predictions_a = adapt(
            model, params, shared, inputa, labela, spec, spec.num_updates)
        predictions_b = model.forward(inputb, params=trajectory[-1], shared=shared)
    values = {"pre_loss": pre_losses}   # the inner step's own loss, not computed again
    if spec.classification:
        values["pre_accuracy"] = task_accuracies(predictions_a, labela)
    return dict(values, **_set_values("post", predictions_b, labelb, spec))


def meta_objective(model, batch, spec: InnerLoopSpec, task_groups: int = 1):
    """Forward pass of one meta-training step.

    Returns (meta_loss, metrics) where meta_loss is the mean over tasks of the query loss
    after ``spec.num_updates`` inner steps and each metric the mean over tasks of
    :func:`task_objectives`' values. ``task_groups`` > 1 computes groups of tasks as
    independent computations (:func:`over_task_groups`): the same values, faster on CPUs.
    Must run under the caller's outer GradientTape.
    """
    values = over_task_groups(lambda part: task_objectives(model, part, spec), batch,
                              task_groups)
    metrics = {name: tf.reduce_mean(value) for name, value in values.items()}
    return metrics["post_loss"], metrics


def meta_gradients(model, batch, spec: InnerLoopSpec, clip_value: Optional[float] = None,
                   task_groups: int = 1):
    """Meta-gradients of the query loss with respect to ``model.trainable_variables``.

    A pure function of (weights, task batch): the unit a distribution strategy would run per
    replica. ``clip_value`` clips element-wise to [-clip, clip] (MiniImagenet: 10);
    ``task_groups``: see :func:`meta_objective`.
    """
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        meta_loss, metrics = meta_objective(model, batch, spec, task_groups)
    return clip_gradients(_gradients(tape, meta_loss, variables), clip_value), metrics


def _gradients(tape, target, variables) -> list:
    """``tape.gradient``, with zeros (not None) for a variable the target does not use (a
    bias before batch norm, :func:`maml_tf.norm.cancels_bias`): the optimizer then treats
    every weight alike. (Keras 3 variables do not take ``unconnected_gradients=ZERO``.)"""
    return [tf.zeros_like(variable.value) if grad is None else grad
            for grad, variable in zip(tape.gradient(target, variables), variables)]


def clip_gradients(grads, clip_value: Optional[float]):
    """Element-wise clipping to [-clip, clip]; None leaves the gradients as they are."""
    if clip_value is None:
        return grads
    return [tf.clip_by_value(g, -clip_value, clip_value) for g in grads]


def pretrain_gradients(model, batch, spec: InnerLoopSpec, clip_value: Optional[float] = None,
                       task_groups: int = 1):
    """The pretraining baseline: gradients of the support loss with no inner loop
    (``task_groups``: see :func:`meta_objective`)."""
    def support_values(part):
        inputa, labela = part
        predictions = model.forward(inputa, params=model.tiled_parameters(tf.shape(inputa)[0]))
        return _set_values("pre", predictions, labela, spec)

    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        values = over_task_groups(support_values, tuple(batch[:2]), task_groups)
        metrics = {name: tf.reduce_mean(value) for name, value in values.items()}
    grads = clip_gradients(_gradients(tape, metrics["pre_loss"], variables), clip_value)
    return grads, metrics


def evaluate_adaptation(model, batch, spec: InnerLoopSpec, num_steps: int,
                        params: Optional[dict] = None, shared: Optional[dict] = None):
    """Per-task values before and after each of ``num_steps`` inner steps (no meta-gradient).

    Returns a dict of [T, num_steps + 1] tensors: ``losses`` (column 0 the support loss before
    adaptation, column j the query loss after j steps) and, for classification,
    ``accuracies`` laid out the same way: the columns of the original's test CSV.
    """
    inputa, labela, inputb, labelb = batch
    if params is None:
        params = model.tiled_parameters(tf.shape(inputa)[0])
    if shared is None:
        shared = model.shared_parameters()
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    trajectory, pre_losses, predictions_a = adapt(
        model, params, shared, inputa, labela, spec, num_steps)
    losses = [pre_losses]
    accuracies = [task_accuracies(predictions_a, labela)]
    for fast in trajectory:
        predictions_b = model.forward(inputb, params=fast, shared=shared)
        losses.append(task_losses(predictions_b, labelb, spec))
        accuracies.append(task_accuracies(predictions_b, labelb))
    result = {"losses": tf.stack(losses, axis=1)}
    if spec.classification:
        result["accuracies"] = tf.stack(accuracies, axis=1)
    return result
