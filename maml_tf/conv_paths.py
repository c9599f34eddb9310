"""How a task-batched conv net runs its tasks' convolutions: the paths ``ConvNet`` chooses from.

Every path computes the per-task network exactly (tests hold each to the per-task one); they
differ only in speed and in what the device supports:

* :func:`folded_conv_blocks` ("folded", the default where it works): the tasks folded into
  the channels once, for all four blocks;
* :func:`grouped_conv2d` ("grouped"): folded and unfolded around each convolution;
* :func:`per_task_conv2d` ("per_task"): one ordinary convolution per task, the path for
  float64 and for CPUs without oneDNN, which cannot differentiate grouped convolutions
  (:func:`grouped_conv_gradients_available` asks the device).

Why a module of its own: these are layout and kernel choices, measured one against another
in docs/RESULTS.md "Speed"; :mod:`maml_tf.models` only says what the networks compute.
"""
from __future__ import annotations

import functools
import os
import re

import tensorflow as tf

from maml_tf import norm as norm_lib
from maml_tf import pooling


def grouped_conv2d(x, kernels, strides: int):
    """Task-batched 'SAME' convolution as one grouped convolution.

    x [T, B, H, W, C], kernels [T, 3, 3, C, F] -> [T, B, H', W', F]. The task axis is folded
    into the channel axis (T*C input channels, T groups), which TensorFlow's CPU kernels run
    as one op and differentiate twice.
    """
    num_tasks = tf.shape(x)[0]
    batch, height, width, channels = (tf.shape(x)[1], x.shape[2], x.shape[3], x.shape[4])
    filters = kernels.shape[-1]
    folded = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]),
                        [batch, height, width, num_tasks * channels])
    folded_kernel = tf.reshape(tf.transpose(kernels, [1, 2, 3, 0, 4]),
                               [3, 3, channels, num_tasks * filters])
    out = tf.nn.conv2d(folded, folded_kernel, strides=strides, padding="SAME")
    out_h, out_w = out.shape[1], out.shape[2]
    out = tf.reshape(out, [batch, out_h, out_w, num_tasks, filters])
    return tf.transpose(out, [3, 0, 1, 2, 4])


@functools.lru_cache(maxsize=None)
def grouped_conv_gradients_available(dtype: str = "float32") -> tuple[bool, str]:
    """Whether this device differentiates grouped convolutions twice, correctly.

    Why a probe instead of a CPU-model check: on CPU, TensorFlow differentiates grouped
    convolutions only through oneDNN, which TensorFlow 2.21 enables by default only on some
    CPUs (``maml_tf.runtime`` asks for it everywhere, but a user may turn it off, import
    TensorFlow first, or run a build without it), and oneDNN has no float64 kernels. GPUs
    differentiate them through cuDNN. So the model asks the device: a tiny task-batched
    convolution, second-order gradients through both strides used by the conv nets, compared
    with the per-task convolution. Returns ``(available, reason)``; cached per dtype.
    """
    try:
        x = tf.random.stateless_normal([2, 2, 5, 5, 3], seed=[1, 2], dtype=dtype)
        kernels = tf.random.stateless_normal([2, 3, 3, 3, 4], seed=[3, 4], dtype=dtype)
        results = []
        for conv in (grouped_conv2d, per_task_conv2d):
            for stride in (1, 2):
                with tf.GradientTape() as outer:
                    outer.watch(kernels)
                    with tf.GradientTape() as inner:
                        inner.watch([x, kernels])
                        loss = tf.reduce_sum(tf.square(conv(x, kernels, stride)))
                    grad_x, grad_k = inner.gradient(loss, [x, kernels])
                    meta = tf.reduce_sum(tf.square(grad_k)) + tf.reduce_sum(tf.square(grad_x))
                results.append(outer.gradient(meta, kernels))
    except (tf.errors.OpError, ValueError, TypeError) as error:
        text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error)).strip()
        first_sentence = text.splitlines()[0].split(". ")[0][:160] if text else ""
        return False, f"{type(error).__name__}: {first_sentence}"
    for fast, reference in zip(results[:2], results[2:]):
        scale = float(tf.reduce_max(tf.abs(reference)))
        if float(tf.reduce_max(tf.abs(fast - reference))) > 1e-3 * scale:
            return False, "grouped-convolution gradients differ from the per-task ones"
    return True, ""


def fallback_message(reason: str) -> str:
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)")
    return ("maml_tf: this device cannot differentiate grouped convolutions "
            f"(TF_ENABLE_ONEDNN_OPTS={onednn}; {reason}); the conv net uses one convolution "
            "per task instead: same results, several times slower. For the fast path on CPU "
            "set TF_ENABLE_ONEDNN_OPTS=1 (or leave it unset) before TensorFlow is imported.")


def per_task_conv2d(x, kernels, strides: int):
    """The same convolution as :func:`grouped_conv2d`, one ordinary conv per task.

    Slower, but TensorFlow's CPU kernels differentiate grouped convolutions only through
    oneDNN, which has no float64: the float64 gradient checks (and a user who disables
    oneDNN) take this path. Tests check that both paths agree.
    """
    if x.shape[0] is not None:
        return tf.stack([tf.nn.conv2d(x[t], kernels[t], strides=strides, padding="SAME")
                         for t in range(x.shape[0])])
    return tf.map_fn(lambda xk: tf.nn.conv2d(xk[0], xk[1], strides=strides, padding="SAME"),
                     (x, kernels), fn_output_signature=x.dtype)


def max_pool_2x2(x):
    """2x2 'VALID' max-pool, stride 2, on [T, B, H, W, C] activations."""
    num_tasks, batch = tf.shape(x)[0], tf.shape(x)[1]
    flat = tf.reshape(x, tf.concat([[num_tasks * batch], tf.shape(x)[2:]], axis=0))
    pooled = pooling.max_pool_2x2(flat)
    return tf.reshape(pooled, tf.concat([[num_tasks, batch], tf.shape(pooled)[1:]], axis=0))


# "grouped" and "folded" need grouped-convolution gradients (the probe above); "auto" takes
# AUTO_CONV_IMPL where they exist and "per_task" elsewhere (float64, oneDNN off).
CONV_IMPLS = ("auto", "folded", "grouped", "per_task")
AUTO_CONV_IMPL = "folded"


def _static_or_dynamic(x, axis):
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def folded_conv_blocks(x, params: dict, shared: dict, norm: str, activation, max_pool: bool,
                       fused_batch_norm: bool = False):
    """ConvNet's four blocks with the tasks folded into the channels once, for all of them.

    x [T, B, H, W, C] -> [T, B, h, w, F]. Why: the grouped path transposes the tasks into the
    channels and back around every convolution, and the second-order meta-gradient pays for
    each of those copies several times over. Here activations stay [B, H, W, T*C] (channel
    t*C + c is task t's channel c) from the first convolution to the head: each kernel is
    folded to [3, 3, Cin, T*F] (a grouped convolution with T groups), the bias to [T*F]; bias,
    ReLU and max-pooling act per channel, so per task; batch norm's statistics per folded
    channel over [B, H, W] are each task's statistics per channel, with the shared offset tiled
    over the tasks; layer norm unfolds to [B, H, W, T, F] for its per-example, per-task
    statistics over [H, W, F]. The maths is the per-task network's; tests check it.
    ``fused_batch_norm``: batch norm as one fused kernel (:func:`maml_tf.norm.fused_batch_norm`).
    """
    num_tasks, batch = _static_or_dynamic(x, 0), _static_or_dynamic(x, 1)
    hidden = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]),
                        [batch, x.shape[2], x.shape[3], num_tasks * x.shape[4]])
    filters = None
    for i in range(1, 5):
        kernel = params[f"conv{i}"]  # [T, 3, 3, Cin, F]
        filters = kernel.shape[4]
        folded_kernel = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]),
                                   [kernel.shape[1], kernel.shape[2], kernel.shape[3],
                                    num_tasks * filters])
        hidden = tf.nn.conv2d(hidden, folded_kernel, strides=1 if max_pool else 2,
                              padding="SAME")
        if not norm_lib.cancels_bias(norm):
            hidden = hidden + tf.reshape(params[f"b{i}"], [-1])
        scope = f"norm{i}"
        if norm == "batch_norm":
            offset = tf.tile(shared[f"{scope}_offset"], [num_tasks])
            hidden = (norm_lib.fused_batch_norm(hidden, offset) if fused_batch_norm
                      else norm_lib.batch_norm_over(hidden, offset, (0, 1, 2)))
        elif norm == "layer_norm":
            height, width = hidden.shape[1], hidden.shape[2]
            unfolded = tf.reshape(hidden, [batch, height, width, num_tasks, filters])
            unfolded = norm_lib.layer_norm(unfolded, shared[f"{scope}_offset"],
                                           shared[f"{scope}_scale"], axes=(1, 2, 4))
            hidden = tf.reshape(unfolded, [batch, height, width, num_tasks * filters])
        elif norm != "None":
            raise ValueError(f"unknown norm {norm!r}; expected one of {norm_lib.NORMS}")
        if max_pool and activation is tf.nn.relu:
            # ReLU is non-decreasing, so it commutes with the max: pooling first gives the same
            # values and the same gradients at every order (the max's routing is the same;
            # where a window's max is <= 0 both give 0), on a quarter of the elements: 2-3%
            # less time per MiniImagenet iteration (docs/RESULTS.md, session 17)
            hidden = activation(pooling.max_pool_2x2(hidden))
        else:
            hidden = activation(hidden) if activation is not None else hidden
            if max_pool:
                hidden = pooling.max_pool_2x2(hidden)
    height, width = hidden.shape[1], hidden.shape[2]
    hidden = tf.reshape(hidden, [batch, height, width, num_tasks, filters])
    return tf.transpose(hidden, [3, 0, 1, 2, 4])


def fused_batch_norm_default(max_pool: bool, first_order: bool) -> bool:
    """Whether main.py's conv nets use the fused batch norm: where it measured faster.

    * The nets with max-pooling (the MiniImagenet architecture's 84 x 84 activations), both
      orders: first order about 15% less time per iteration (session 8, AVX2 EPYC), second
      order about 10% less on the AVX-512 Zen 5 machine (session 14).
    * The strided Omniglot nets in second order, since its second derivative reads the
      kernel's batch variance back (session 17, Zen 5, every alternating round): 0.953x
      (5-way 1-shot) and 0.969x (20-way 1-shot). Not in first order there: 1.006x and
      1.025x, the element-wise chain of the exact form being no bottleneck on 14 x 14 and
      smaller activations.
    """
    return max_pool or not first_order
