"""Batch norm's hand-written backward (maml_tf.norm.batch_norm_over) is the exact derivative.

It replaces autodiff of the moments for speed (issue 10); second-order MAML differentiates it
once more, through a derivative that is written out as well, so both its first and second
derivatives are held to autodiff, in float64, eagerly and in a traced function (training's
mode).
"""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import norm as norm_lib


def _autodiff_batch_norm(x, offset, axes):
    mean, variance = norm_lib.exact_moments(x, axes)
    return (x - mean) * tf.math.rsqrt(variance + norm_lib.BATCH_NORM_EPSILON) + offset


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("shape,axes", [((3, 4, 5), (1,)),               # dense [T, N, C]
                                        ((2, 3, 4, 4, 5), (1, 2, 3)),    # conv [T, B, H, W, C]
                                        ((3, 4, 4, 6), (0, 1, 2))])      # folded [B, H, W, T*C]
def test_hand_written_batch_norm_gradient_equals_autodiff_to_second_order(shape, axes, traced):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape) * 3 + 1)
    offset = tf.constant(rng.normal(size=shape[-1:]))
    weights = tf.constant(rng.normal(size=shape))  # a non-symmetric loss
    direction = tf.constant(rng.normal(size=shape))

    def derivatives(fn):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([x, offset])
            with tf.GradientTape() as inner:
                inner.watch([x, offset])
                loss = tf.reduce_sum(weights * tf.tanh(fn(x, offset, axes)))
            dx, doffset = inner.gradient(loss, [x, offset])
            # a second-order quantity like MAML's: the gradient of a function of gradients
            meta = tf.reduce_sum(dx * direction) + tf.reduce_sum(tf.square(doffset))
        return [dx, doffset, *outer.gradient(meta, [x, offset])]
    results = [(tf.function(derivatives) if traced else derivatives)(fn)
               for fn in (norm_lib.batch_norm_over, _autodiff_batch_norm)]
    for fast, plain in zip(*results):
        assert float(tf.reduce_max(tf.abs(plain))) > 1e-3  # a real derivative, not zeros
        np.testing.assert_allclose(fast.numpy(), plain.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("shape, axes", [((4, 5, 5, 6), (0, 1, 2)),      # the product
                                         ((3, 4, 5, 5, 6), (1, 2, 3)),   # reduce_mean
                                         ((7, 6), (0,))])
def test_mean_over_is_reduce_mean_with_its_gradients(shape, axes, traced):
    """norm_lib.mean_over (a matrix product for batch norm's NHWC statistics) against
    tf.reduce_mean in float64, and sum_over_leading_axes against tf.reduce_sum: value,
    gradient and a second derivative through them."""
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=shape))
    weights = tf.constant(rng.normal(size=np.shape(np.mean(np.zeros(shape), axis=axes,
                                                           keepdims=True))))

    def derivatives(mean):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = mean(tf.square(x))
                loss = tf.reduce_sum(value * weights)
            grad = tape.gradient(loss, x)
            second = tf.reduce_sum(tf.sin(grad))
        return value, grad, outer.gradient(second, x)

    run = tf.function(derivatives) if traced else derivatives
    ours = run(lambda z: norm_lib.mean_over(z, axes))
    reference = derivatives(lambda z: tf.reduce_mean(z, axes, keepdims=True))
    if axes == tuple(range(len(shape) - 1)):   # and the sum batch norm's offset gradient takes
        ours += run(lambda z: norm_lib.sum_over_leading_axes(z) * tf.reshape(weights, [-1]))
        reference += derivatives(lambda z: tf.reduce_sum(z, axes) * tf.reshape(weights, [-1]))
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
