"""The max-pool with the written second derivative is tf.nn.max_pool2d: value, gradient and
second derivative, with ties and odd sizes, in float32 and float64, eager and traced."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from maml_tf.pooling import max_pool_2x2


def _derivatives(pool, x, upstream, cotangent):
    """(y, dx, d<dx, cotangent>/d(upstream)): the second derivative MAML's outer loop takes."""
    with tf.GradientTape() as outer:
        outer.watch(upstream)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = pool(x)
            loss = tf.reduce_sum(y * upstream)
        dx = tape.gradient(loss, x)
        second = tf.reduce_sum(dx * cotangent)
    return y, dx, outer.gradient(second, upstream)


def _tensorflows(z):
    return tf.nn.max_pool2d(z, ksize=2, strides=2, padding="VALID")


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [(8, 8), (7, 9)], ids=["even", "odd"])
def test_max_pool_matches_tensorflows_to_second_order(dtype, size, traced):
    """Traced too: in a graph oneDNN's kernels replace the plain ones (training's case)."""
    rng = np.random.default_rng(0)
    # few distinct values: many windows hold their maximum twice or more (ties), and a
    # ReLU-like share of zeros
    x = tf.constant(np.maximum(rng.integers(-2, 3, size=(3, *size, 4)), 0).astype(dtype))
    pooled = (3, size[0] // 2, size[1] // 2, 4)
    upstream = tf.constant(rng.normal(size=pooled).astype(dtype))
    cotangent = tf.constant(rng.normal(size=x.shape).astype(dtype))
    results = []
    for pool in (max_pool_2x2, _tensorflows):
        run = functools.partial(_derivatives, pool)
        run = tf.function(run) if traced else run
        results.append([t.numpy() for t in run(x, upstream, cotangent)])
    ours, reference = results
    assert ours[0].shape == pooled
    ties = sum(np.sum(x.numpy()[:, i:2 * pooled[1]:2, j:2 * pooled[2]:2, :] == ours[0])
               for i in (0, 1) for j in (0, 1)) - ours[0].size
    assert ties > ours[0].size // 4    # the test exercises tie-breaking
    for mine, theirs in zip(ours, reference):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)
    # the second derivative is the transpose of the gradient's routing, whichever kernel
    # computed the gradient: <S dy, u> = <dy, S^T u>
    np.testing.assert_allclose(np.sum(ours[1] * cotangent.numpy()),
                               np.sum(upstream.numpy() * ours[2]), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling_before_the_relu_is_the_originals_relu_then_pool(dtype):
    """maml_tf.conv_paths pools before the ReLU (a quarter of the elements). ReLU is
    non-decreasing, so value, gradient and the second derivative MAML takes are the
    original's ReLU-then-pool ones exactly: inputs of small integers give ties, zeros and
    windows that are all negative, where both orders must give 0."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.integers(-3, 4, size=(3, 8, 8, 4)), dtype=dtype)
    upstream = tf.constant(rng.normal(size=(3, 4, 4, 4)), dtype=dtype)
    cotangent = tf.constant(rng.normal(size=(3, 8, 8, 4)), dtype=dtype)
    original = _derivatives(lambda z: max_pool_2x2(tf.nn.relu(z)), x, upstream, cotangent)
    pooled_first = _derivatives(lambda z: tf.nn.relu(max_pool_2x2(z)), x, upstream, cotangent)
    for reference, value in zip(original, pooled_first):
        np.testing.assert_array_equal(value.numpy(), reference.numpy())
    assert np.any(original[1].numpy() != 0) and np.any(original[2].numpy() != 0)
    # the check can fail: a non-monotone activation does not commute with the max
    swapped = _derivatives(lambda z: tf.abs(max_pool_2x2(z)), x, upstream, cotangent)
    assert not np.array_equal(swapped[0].numpy(),
                              _derivatives(lambda z: max_pool_2x2(tf.abs(z)), x, upstream,
                                           cotangent)[0].numpy())
