"""The original's 2x2 'VALID' max-pooling (stride 2), with a cheap second derivative.

Second-order MAML differentiates the max-pool's gradient once more. TensorFlow's derivative
of ``MaxPoolGrad`` is ``MaxPoolGradGrad``, a plain CPU kernel that re-finds every window's
maximum from the input: about 8% of a second-order MiniImagenet meta-iteration for work
that is a selection (docs/RESULTS.md, session 16). The gradient is linear in the upstream
gradient, ``dx = S dy`` for a 0/1 selection ``S`` that routes each window's gradient to its
maximum, so its own derivative is ``S^T u``: each window's element of ``u`` at the maximum,
picked with the mask ``S 1`` (:func:`_routed_to_first_maximum`).

Example:
    >>> import tensorflow as tf
    >>> from maml_tf.pooling import max_pool_2x2
    >>> max_pool_2x2(tf.zeros([5, 84, 84, 32])).shape
    TensorShape([5, 42, 42, 32])
    >>> x = tf.reshape(tf.range(16.0), [1, 4, 4, 1])          # one 4 x 4 image
    >>> max_pool_2x2(x)[0, :, :, 0].numpy()                    # each 2 x 2 window's maximum
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
"""
from __future__ import annotations

import tensorflow as tf

_POOL = dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID", data_format="NHWC")


def _routed_to_first_maximum(u, x, y):
    """``S^T u``: each window's element of u at the window's maximum of x, [N, h, w, C].

    ``S 1`` (ones routed by ``MaxPoolGrad``, so with its own tie rule: the first maximum in
    row-major order) is a mask with one 1 per window, and the window sum of ``u * mask`` is
    that element: an average pool times 4, exact for finite u (one term and three zeros;
    dividing and multiplying by 4 are exact in binary floating point; an infinite u off the
    maximum would give NaN, where MAML's gradients are already non-finite). Five kernels
    where window extraction by strided slices took thirteen: 0.983x per second-order
    MiniImagenet iteration (docs/RESULTS.md, session 17)."""
    mask = tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=tf.ones_like(y), **_POOL)
    return tf.raw_ops.AvgPool(value=u * mask, **_POOL) * 4.0


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
