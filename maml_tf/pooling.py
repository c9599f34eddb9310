"""The original's 2x2 'VALID' max-pooling (stride 2), with a cheap second derivative.

Second-order MAML differentiates the max-pool's gradient once more. TensorFlow's derivative
of ``MaxPoolGrad`` is ``MaxPoolGradGrad``, a plain CPU kernel that re-finds every window's
maximum from the input: about 8% of a second-order MiniImagenet meta-iteration for work
that is a selection (docs/RESULTS.md, session 16). The gradient is linear in the upstream
gradient, ``dx = S dy`` for a 0/1 selection ``S`` that routes each window's gradient to its
maximum, so its own derivative is ``S^T u``: each window's element of ``u`` at the maximum,
three comparisons and three selections on pooled-size tensors.

Example::

    y = max_pool_2x2(tf.random.normal([5, 84, 84, 32]))   # [5, 42, 42, 32]
"""
from __future__ import annotations

import tensorflow as tf

_POOL = dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID", data_format="NHWC")


def _window_elements(z, pooled_shape):
    """The four elements of every 2 x 2 window of z [N, H, W, C] (cropped to the pooled
    windows, as 'VALID' drops a last odd row or column), each [N, h, w, C], in row-major
    order: (0, 0), (0, 1), (1, 0), (1, 1)."""
    n, h, w, c = tf.unstack(pooled_shape)
    windows = tf.reshape(z[:, :2 * h, :2 * w, :], tf.stack([n, h, 2, w, 2, c]))
    return [windows[:, :, i, :, j, :] for i in (0, 1) for j in (0, 1)]


def _routed_to_first_maximum(u, x, y):
    """``S^T u``: each window's element of u at the window's first maximum of x (row-major
    order, as ``MaxPoolGrad`` routes ties), [N, h, w, C]."""
    shape = tf.shape(y)
    (x00, x01, x10, _), (u00, u01, u10, u11) = (_window_elements(x, shape),
                                                _window_elements(u, shape))
    return tf.where(tf.equal(x00, y), u00,
                    tf.where(tf.equal(x01, y), u01, tf.where(tf.equal(x10, y), u10, u11)))


def max_pool_2x2(x: tf.Tensor) -> tf.Tensor:
    """``tf.nn.max_pool2d(x, 2, 2, 'VALID')`` on NHWC ``x``; the same value and gradient, and
    a second derivative from the window selection instead of ``MaxPoolGradGrad``."""
    @tf.custom_gradient
    def pool(x):
        y = tf.raw_ops.MaxPool(input=x, **_POOL)

        def grad(dy):
            @tf.custom_gradient
            def routed(dy):
                dx = tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=dy, **_POOL)

                def second_order(u):
                    # dx is piecewise constant in x: only d/d(dy) = S^T u is nonzero
                    return _routed_to_first_maximum(u, x, y)

                return dx, second_order
            return routed(dy)
        return y, grad
    return pool(x)
