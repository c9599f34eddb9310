"""Normalisation as the original code applies it, written for task-batched activations.

Activations carry a leading task dimension: [tasks, batch, features] or
[tasks, batch, height, width, channels]. Statistics are always per task, matching the original
which ran every task's forward pass separately.

Batch norm follows ``tf.contrib.layers.batch_norm`` in training mode with ``scale=False``: the
*current batch's* statistics are used at training and at test time, epsilon 1e-3, and only a
learned offset (beta). Layer norm follows ``tf.contrib.layers.layer_norm``: statistics over all
non-batch axes of each example, epsilon 1e-12, learned offset and scale per channel.

Moments are computed exactly (``mean(square(x - mean))``). ``tf.nn.moments`` and Keras'
BatchNormalization stop the gradient through the mean inside the variance; that leaves
first-order gradients exact but makes the second-order MAML meta-gradient wrong.

Batch norm's backward pass is written out by hand (:func:`batch_norm_over`): autodiff of the
moments records a dozen small ops per layer, and the second-order meta-gradient differentiates
that graph once more; the closed form is three reductions. Its own derivative, which the
second-order meta-gradient needs, is written out too (:func:`_input_gradient`): autodiff of
the closed form took about 4-5% more time per second-order conv meta-iteration (session 11).
A test holds both derivatives to autodiff in float64.
"""
from __future__ import annotations

import tensorflow as tf

NORMS = ("batch_norm", "layer_norm", "None")
BATCH_NORM_EPSILON = 1e-3
LAYER_NORM_EPSILON = 1e-12


def cancels_bias(norm: str) -> bool:
    """Whether a per-channel bias added right before this normalisation has no effect.

    Batch norm subtracts each channel's batch mean, so ``batch_norm(x + b) == batch_norm(x)``
    exactly and the bias's exact gradient is zero. The models then leave the add out (the
    original's ``b1..b4`` stay weights, so checkpoints keep their layout, with a gradient of
    exactly zero where the original's was float rounding noise): one element-wise op fewer
    per block and its gradient sums, about 3% of a second-order Omniglot meta-iteration
    (docs/RESULTS.md, session 12). Layer norm's statistics run over the channels, so a bias
    before it does not cancel.
    """
    return norm == "batch_norm"


def mean_over(z: tf.Tensor, axes) -> tf.Tensor:
    """``tf.reduce_mean(z, axes, keepdims=True)``; over every axis but the last (batch norm's
    statistics on NHWC activations) as a matrix product of a row of 1/n with z seen as
    [n, channels].

    Why: TensorFlow's CPU reduction over the leading axes is slow on these shapes (a
    [5, 14, 14, 512] mean 80 us against 14 us as a product, one thread), and batch norm takes
    several per layer and step. Same maths (another summation order): 0.883x-0.961x per
    first-order and 0.981x-0.987x per second-order Omniglot iteration, neutral on MiniImagenet
    (docs/RESULTS.md, session 17)."""
    return _over_leading_axes(z, axes, mean=True)


def sum_over_leading_axes(z: tf.Tensor) -> tf.Tensor:
    """``tf.reduce_sum`` over every axis but the last, [channels]: :func:`mean_over`'s
    product with a row of ones (batch norm's offset gradient)."""
    return tf.reshape(_over_leading_axes(z, list(range(z.shape.rank - 1)), mean=False), [-1])


def _over_leading_axes(z, axes, mean: bool):
    axes = list(axes)
    rank = z.shape.rank
    if rank is None or axes != list(range(rank - 1)) or z.shape[-1] is None:
        reduce = tf.reduce_mean if mean else tf.reduce_sum
        return reduce(z, axes, keepdims=True)
    channels = z.shape[-1]
    flat = tf.reshape(z, [-1, channels])
    count = tf.shape(flat)[0]
    weight = 1.0 / tf.cast(count, z.dtype) if mean else tf.ones([], z.dtype)
    weights = tf.fill(tf.stack([1, count]), weight)
    return tf.reshape(tf.matmul(weights, flat), [1] * (rank - 1) + [channels])


def exact_moments(x: tf.Tensor, axes: list[int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and (biased) variance with gradients through both terms of the variance."""
    mean = mean_over(x, axes)
    variance = mean_over(tf.square(x - mean), axes)
    return mean, variance


def batch_norm_over(x: tf.Tensor, offset: tf.Tensor, axes: tuple[int, ...]) -> tf.Tensor:
    """``(x - mean) * rsqrt(var + eps) + offset``, statistics over ``axes``; ``offset`` is
    per channel (the last axis) and broadcast over every other axis.

    Why a hand-written gradient: with ``xhat`` the normalised input and ``rstd`` the inverse
    standard deviation, ``dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`` (means over
    ``axes``) and ``d_offset = sum(dy)`` over every axis but the last. These are the exact
    derivatives of the function above, in fewer ops than autodiff of the moments. The outer
    tape of second-order MAML differentiates ``dx`` once more through its written-out
    derivative (:func:`_input_gradient`): exact to second order, which is all MAML needs.
    """
    axes = list(axes)

    def mean(z):
        return mean_over(z, axes)

    @tf.custom_gradient
    def normalise(x, offset):
        moment1, variance = exact_moments(x, axes)
        rstd = tf.math.rsqrt(variance + BATCH_NORM_EPSILON)
        xhat = (x - moment1) * rstd

        def grad(dy):
            return (_input_gradient(dy, x, xhat, rstd, mean),
                    sum_over_leading_axes(dy))
        return xhat + offset, grad
    return normalise(x, offset)


def _projection(z, xhat, mean):
    """``(P(z), mean(z), mean(z * xhat))`` with ``P(z) = z - mean(z) - xhat * mean(z * xhat)``:
    batch norm's input gradient is ``rstd * P(dy)``."""
    z_mean, z_xhat = mean(z), mean(z * xhat)
    return z - z_mean - xhat * z_xhat, z_mean, z_xhat


def _second_derivative(u, dy, xhat, rstd, mean, dy_terms):
    """The derivative of ``dx = rstd * P(dy)`` as a function of (dy, x), against a cotangent
    ``u`` of dx: d/d(dy) = ``rstd * P(u)`` (P is symmetric) and
    d/dx = ``-rstd^2 * (c * xhat + mean(u * xhat) * P(dy) + mean(dy * xhat) * P(u))`` with
    ``c = mean(u * dy) - mean(dy) * mean(u) - mean(dy * xhat) * mean(u * xhat)``, from
    d rstd / dx = -rstd^2 xhat / n and d<z, xhat>/dx = rstd P(z). ``dy_terms`` is
    ``_projection(dy, xhat, mean)``."""
    projected_dy, dy_mean, dy_xhat = dy_terms
    projected_u, u_mean, u_xhat = _projection(u, xhat, mean)
    c = mean(u * dy) - dy_mean * u_mean - dy_xhat * u_xhat
    d_x = -tf.square(rstd) * (c * xhat + u_xhat * projected_dy + dy_xhat * projected_u)
    return rstd * projected_u, d_x


def _input_gradient(dy, x, xhat, rstd, mean):
    """``dx = rstd * P(dy)`` as a function of (dy, x) whose own derivative (what second-order
    MAML differentiates) is written out (:func:`_second_derivative`)."""
    @tf.custom_gradient
    def input_gradient(dy, x):
        dy_terms = _projection(dy, xhat, mean)

        def second_order(u):
            return _second_derivative(u, dy, xhat, rstd, mean, dy_terms)
        return rstd * dy_terms[0], second_order
    return input_gradient(dy, x)


def fused_batch_norm(x: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """:func:`batch_norm_over` of an NHWC tensor (statistics over N, H, W) with oneDNN's fused
    kernels for the forward pass and the input gradient.

    Why: on the folded MiniImagenet activations (84 x 84 x tasks*32 per image) the element-wise
    chain of the exact form is about a third of a first-order meta-iteration's kernel time;
    the fused kernels do the forward and the backward in one pass each. The second
    derivative, which only second-order MAML asks for, is the written-out closed form
    (:func:`_fused_second_derivative`, reusing what the kernels computed): TensorFlow's own
    derivative of the fused gradient kernel (``nn_grad._BatchNormGrad`` differentiated by
    autodiff) took about 1.2x the time per second-order MiniImagenet meta-iteration (session
    16, docs/RESULTS.md). Same function and derivatives (float32 rounding 2-3x the exact
    form's, about 3e-5 relative on MiniImagenet shapes); tests/test_conv_paths.py holds them
    to the exact form, and the second-order meta-gradient through it to the per-task
    network's.
    """
    axes = [0, 1, 2]

    def mean(z):
        return mean_over(z, axes)

    @tf.custom_gradient
    def normalise(x, offset):
        ones, empty = tf.ones_like(offset), tf.constant([], x.dtype)
        y, _, batch_variance, reserve_1, reserve_2, reserve_3 = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=ones, offset=offset, mean=empty, variance=empty,
            epsilon=BATCH_NORM_EPSILON, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)

        def grad(dy):
            # the kernel's offset gradient, sum(dy), comes with dx: no extra pass over dy
            @tf.custom_gradient
            def gradients(dy, x):
                dx, d_scale, d_offset = tf.raw_ops.FusedBatchNormGradV3(
                    y_backprop=dy, x=x, scale=ones, reserve_space_1=reserve_1,
                    reserve_space_2=reserve_2, reserve_space_3=reserve_3,
                    epsilon=BATCH_NORM_EPSILON, data_format="NHWC", is_training=True)[:3]

                def second_order(u, u_offset):
                    return _fused_second_derivative(u, u_offset, x, y, offset,
                                                    batch_variance, dy, dx, d_scale, d_offset,
                                                    mean)
                return (dx, d_offset), second_order
            return gradients(dy, x)
        return y, grad
    return normalise(x, offset)


def _fused_second_derivative(u, u_offset, x, y, offset, batch_variance, dy, dx, d_scale,
                             d_offset, mean):
    """:func:`_second_derivative` for the fused kernel, against cotangents (u, u_offset) of
    its gradients (dx, d_offset = sum(dy)), in fewer passes over the activations. The fused
    kernels already hold ``xhat = y - offset``, the batch variance, ``mean(dy) = d_offset / n``,
    ``mean(dy * xhat) = d_scale / n`` and ``P(dy) = dx / rstd``; with the per-channel factors
    gathered first, the same expressions expand to d/dx = ``-rstd^2 (c - mean(dy xhat)
    mean(u xhat)) xhat - rstd mean(u xhat) dx - rstd^2 mean(dy xhat) (u - mean(u))`` and
    d/d(dy) = ``rstd (u - mean(u) - mean(u xhat) xhat) + u_offset``."""
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
    # the kernel's batch variance carries Bessel's correction (it feeds running averages);
    # the normalisation used the biased one. Reading it back instead of recomputing it from
    # x saves a pass over the activations: 0.948x per second-order MiniImagenet iteration
    # (docs/RESULTS.md, session 17). One element per channel has variance 0.
    biased = tf.where(count > 1.0, batch_variance * ((count - 1.0) / tf.maximum(count, 2.0)),
                      tf.zeros_like(batch_variance))
    rstd = tf.math.rsqrt(biased + BATCH_NORM_EPSILON)
    xhat = y - offset
    dy_mean, dy_xhat = d_offset / count, d_scale / count
    u_mean, u_xhat = mean(u), mean(u * xhat)
    c = mean(u * dy) - dy_mean * u_mean - dy_xhat * u_xhat
    rstd2 = tf.square(rstd)
    d_x = ((-rstd2 * (c - dy_xhat * u_xhat)) * xhat + (-rstd * u_xhat) * dx
           + (-rstd2 * dy_xhat) * u + rstd2 * dy_xhat * u_mean)
    d_dy = rstd * u - (rstd * u_xhat) * xhat + (u_offset - rstd * u_mean)
    return d_dy, d_x


def batch_norm(x: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """Per-task batch statistics over every axis but the task and channel axes."""
    return batch_norm_over(x, offset, tuple(range(1, x.shape.rank - 1)))


def layer_norm(x: tf.Tensor, offset: tf.Tensor, scale: tf.Tensor,
               axes: tuple[int, ...] = ()) -> tf.Tensor:
    """Per-example statistics over ``axes`` (default: every axis after the task and batch
    axes); ``offset`` and ``scale`` are per channel (the last axis)."""
    axes = list(axes) or list(range(2, x.shape.rank))
    mean, variance = exact_moments(x, axes)
    return (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * scale + offset


def normalize(x: tf.Tensor, norm: str, shared: dict, scope: str, activation=tf.nn.relu):
    """The original's ``normalize(inp, activation, reuse, scope)``.

    ``shared`` holds the normalisation parameters (``{scope}_offset``, ``{scope}_scale``). They
    are meta-learned but never adapted in the inner loop, as in the original, where they lived
    outside the weight dictionary.
    """
    if norm == "batch_norm":
        x = batch_norm(x, shared[f"{scope}_offset"])
    elif norm == "layer_norm":
        x = layer_norm(x, shared[f"{scope}_offset"], shared[f"{scope}_scale"])
    elif norm != "None":
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    return activation(x) if activation is not None else x
