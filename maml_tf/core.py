"""The functional core of MAML, shared by supervised learning and reinforcement learning.

MAML only needs three things from a model, whatever it computes: its meta-parameters as a
dict of tensors, a forward pass that takes any such dict (``model.forward(inputs,
params=...)``, inputs first, the parameters by keyword), and the same dict with a leading task
dimension so that T tasks adapt in one computation. Everything else is here, once:

- :func:`tile_params`: the meta-parameters copied along a new leading task axis;
- :func:`gradient_update`: ONE gradient step ``fast = params - step_size * grad`` of the
  summed per-task losses (tasks never interact, so that gradient is each task's own), with
  ``first_order`` stopping the gradient through the inner gradient (FOMAML, ``--stop_grad``);
- :func:`adapt`: ``num_updates`` such steps, each on its own loss (the supervised inner loop
  reuses the support set; the RL inner loop samples a fresh batch per step).

The core knows no loss, no data and no optimizer: :mod:`maml_tf.maml` builds the supervised
losses around it and ``rl.adaptation`` the policy-gradient ones (``rl`` imports this module,
never the reverse).

Example:
    >>> import tensorflow as tf
    >>> from maml_tf.core import adapt, tile_params
    >>> from maml_tf.models import FullyConnectedNet
    >>> model = FullyConnectedNet(1, 1, (40, 40))
    >>> params = tile_params(model.meta_parameters(), num_tasks=5)
    >>> inputa, labela = tf.ones([5, 10, 1]), tf.zeros([5, 10, 1])   # 5 tasks, K = 10
    >>> loss = lambda p, step: tf.reduce_mean(
    ...     tf.square(model.forward(inputa, params=p) - labela), axis=[1, 2])
    >>> trajectory, _ = adapt(loss, params, num_updates=1, step_size=0.01)
    >>> trajectory[-1]["w2"].shape       # each task's adapted weights, leading dimension 5
    TensorShape([5, 40, 40])
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence, Union

import tensorflow as tf

Params = dict
StepSize = Union[float, tf.Tensor]


class FunctionalModel(Protocol):
    """What the core needs from a model (a Keras model owning the variables).

    ``meta_parameters()`` returns the adapted weights as tensors the outer tape can see;
    ``forward(inputs, params=...)`` evaluates the model with any parameters, each with a
    leading task dimension matching the inputs'.

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.core import gradient_update, tile_params
        >>> class Scale:                            # y = w * x, one weight
        ...     w = tf.Variable(2.0)
        ...     def meta_parameters(self):
        ...         return {"w": tf.convert_to_tensor(self.w)}
        ...     def forward(self, inputs, params=None):   # params: one w per task
        ...         return params["w"][:, None, None] * inputs
        >>> model, x = Scale(), tf.ones([3, 4, 1])        # 3 tasks, 4 examples each
        >>> params = tile_params(model.meta_parameters(), num_tasks=3)
        >>> fast, _ = gradient_update(lambda p: tf.reduce_mean(
        ...     (model.forward(x, params=p) - x) ** 2, axis=[1, 2]), params, step_size=0.25)
        >>> fast["w"].numpy()                 # 2 - 0.25 * 2 * (2 - 1) for every task
        array([1.5, 1.5, 1.5], dtype=float32)
    """

    def meta_parameters(self) -> Params: ...

    def forward(self, inputs, params: Params | None = None): ...


def tile(value, num_tasks):
    """``value`` copied ``num_tasks`` times along a new leading (task) axis."""
    return tf.repeat(value[None], num_tasks, axis=0)


def tile_params(params: Params, num_tasks) -> Params:
    """Each tensor copied ``num_tasks`` times along a new leading (task) axis."""
    return {name: tile(value, num_tasks) for name, value in params.items()}


def gradient_update(loss_fn: Callable, params: Params, step_size: StepSize,
                    first_order: bool = False, has_aux: bool = False):
    """One plain SGD step of every task: ``params - step_size * grad(sum of task losses)``.

    ``loss_fn(params)`` returns the per-task losses (any shape; they are summed), or with
    ``has_aux`` a pair (losses, aux). Returns ``(fast_params, loss_fn's output)``, that output
    being the value *before* the step. Differentiable: under an outer tape the result carries
    second-order terms unless ``first_order``.

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.core import gradient_update
        >>> params = {"w": tf.constant([1.0, 3.0])}     # one scalar weight for each of 2 tasks
        >>> fast, losses = gradient_update(lambda p: p["w"] ** 2, params, step_size=0.25)
        >>> fast["w"].numpy(), losses.numpy()           # w - 0.25 * 2w; losses before the step
        (array([0.5, 1.5], dtype=float32), array([1., 9.], dtype=float32))
    """
    names = list(params)
    with tf.GradientTape() as tape:
        tape.watch([params[name] for name in names])
        output = loss_fn(params)
        total = tf.reduce_sum(output[0] if has_aux else output)
    # ZERO: a parameter the loss does not use (a bias before batch norm,
    # maml_tf.norm.cancels_bias) keeps its value instead of breaking the step.
    grads = tape.gradient(total, [params[name] for name in names],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if first_order:
        grads = [tf.stop_gradient(grad) for grad in grads]
    fast = {name: params[name] - step_size * grad for name, grad in zip(names, grads)}
    return fast, output


def adapt(loss_fn: Callable, params: Params, num_updates: int,
          step_size: Union[StepSize, Sequence[StepSize]], first_order: bool = False,
          has_aux: bool = False):
    """``num_updates`` gradient steps; ``loss_fn(params, step)`` is step ``step``'s loss.

    ``step_size`` is one value for every step or one per step. ``num_updates`` is a Python
    int: the loop unrolls at trace time, as the original's graph did. Returns (the fast
    parameters after each step, ``loss_fn``'s output at the unadapted parameters).

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.core import adapt
        >>> params = {"w": tf.constant([1.0, 3.0])}     # one scalar weight for each of 2 tasks
        >>> trajectory, first = adapt(lambda p, step: p["w"] ** 2, params, num_updates=3,
        ...                           step_size=[0.25, 0.25, 0.125])
        >>> [fast["w"].numpy().tolist() for fast in trajectory]
        [[0.5, 1.5], [0.25, 0.75], [0.1875, 0.5625]]
        >>> first.numpy()                                # the losses before the first step
        array([1., 9.], dtype=float32)
    """
    if num_updates < 1:
        raise ValueError(f"num_updates must be >= 1, got {num_updates}")
    sizes = (list(step_size) if isinstance(step_size, (list, tuple))
             else [step_size] * num_updates)
    if len(sizes) != num_updates:
        raise ValueError(f"{len(sizes)} step sizes for {num_updates} updates")
    trajectory, first, fast = [], None, params
    for step in range(num_updates):
        fast, output = gradient_update(lambda p, i=step: loss_fn(p, i), fast, sizes[step],
                                       first_order, has_aux)
        if step == 0:
            first = output
        trajectory.append(fast)
    return trajectory, first
