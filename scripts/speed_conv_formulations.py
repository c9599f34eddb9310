"""Alternative formulations of the task-batched conv net, timed against the current path and
checked to give the same meta-gradients (issue 10; a study: what won is now in the engine as
``ConvNet(conv_impl="folded")`` and ``maml_tf.norm.batch_norm_over``).

    flock /tmp/maml_heavy.lock .venv/bin/python scripts/speed_conv_formulations.py \
        --config=omniglot_5way_1shot --variants=current,folded,folded_fused --iterations=10
    # thread settings are per process:
    flock /tmp/maml_heavy.lock .venv/bin/python scripts/speed_conv_formulations.py \
        --variants=current --intra_op=1 --inter_op=1

Each variant builds a model with the same seed (so the same initial weights) and a
``MetaLearner``, checks its meta-gradients (``learner._meta_grads``: inner loop and outer
gradient, before Adam) on one synthetic batch, then times
full ``meta_train_step`` calls: ``--warmup`` untimed calls after the first (tracing) one, then
the median of ``--iterations`` timed ones. One markdown row per variant and order:
milliseconds and the largest difference of its float32 meta-gradients from float64 ones
computed from the same weights (per-task convolutions in float64), relative to the largest
entry of that weight's float64 gradient: the "current" row gives the float32 error of the
present implementation, which a variant's error should match.

Variants:
  current      maml_tf.models.ConvNet as it is ("auto": the engine's fastest available path;
               exact batch norm: main.py uses the fused one for MiniImagenet and for
               second-order Omniglot, maml_tf.conv_paths.fused_batch_norm_default)
  grouped      ConvNet(conv_impl="grouped"): transposes the tasks into the channels and back
               around every convolution (the engine's path before issue 10)
  per_task     ConvNet(conv_impl="per_task"): one convolution per task
  folded       tasks folded into the channels ONCE: activations stay [B, H, W, T*C] through
               all four blocks; bias, batch norm (per channel = per task and channel),
               ReLU and max-pool run on the folded tensor; unfolded only before the head.
               Batch norm by autodiff of the exact moments (norm_lib.exact_moments)
  folded_fused the same with batch norm as tf.compat.v1.nn.fused_batch_norm (training mode,
               scale 1, offset tiled over tasks): one fused op whose gradient op has a
               registered gradient (second order exact: the engine's maml_tf.norm.fused_batch_norm;
               its larger float64 difference here is float32 rounding flipping ReLU masks,
               docs/RESULTS.md "fused batch norm")
  folded_custom  folded, batch norm with a hand-written backward (the engine's
               maml_tf.norm.batch_norm_over, second order exact); with batch norm this is the
               engine's ConvNet(conv_impl="folded")
  folded_nchw  folded, channels-first ([B, T*C, H, W]; oneDNN runs grouped NCHW convs)
  folded_nchw_fused   both
  vmap         tasks through tf.vectorized_map with per-task kernels (pfor; a loop-variant
               filter makes it fall back to a loop over tasks)
  xla          the current model, the meta-gradient compiled with XLA (jit_compile=True)
  im2col       per-task convolutions as one batched matrix product: the 3x3 patches built
               from nine strided slices of the padded input ([T, B*H'*W', 9C] times the
               tasks' kernels [T, 9C, C']); backprop is batched matmuls and slice gradients
  folded_xla   folded, compiled with XLA
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import maml_tf  # noqa: E402,F401  (oneDNN on, before TensorFlow loads)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from maml_tf import norm as norm_lib  # noqa: E402
from maml_tf.learner import MetaLearner  # noqa: E402
from maml_tf.maml import InnerLoopSpec  # noqa: E402
from maml_tf.models import ConvNet  # noqa: E402
from maml_tf.runtime import machine_description  # noqa: E402

# name: (ConvNet keyword arguments, meta_batch, N, K, Q, update_lr, num_updates, clip)
CONFIGS = {
    "omniglot_5way_1shot": (dict(dim_output=5, img_size=28, channels=1, num_filters=64),
                            32, 5, 1, 1, 0.4, 1, None),
    "omniglot_20way_1shot": (dict(dim_output=20, img_size=28, channels=1, num_filters=64),
                             16, 20, 1, 1, 0.1, 5, None),
    "miniimagenet_5way_1shot": (dict(dim_output=5, img_size=84, channels=3, num_filters=32,
                                     max_pool=True, flatten_head=True),
                                4, 5, 1, 15, 0.01, 5, 10.0),
}


class FoldedConvNet(ConvNet):
    """ConvNet whose activations keep the tasks folded into the channel axis throughout.

    Same weights, same maths as ConvNet._forward: per-task batch statistics are
    per-channel statistics of the folded tensor, since channel t*F + f belongs to task t.
    """

    def __init__(self, *args, fused_norm=False, channels_first=False, custom_norm=False,
                 **kwargs):
        super().__init__(*args, conv_impl="grouped", **kwargs)
        self.fused_norm = fused_norm
        self.custom_norm = custom_norm
        self.channels_first = channels_first

    def _fold_kernel(self, kernel):
        # [T, 3, 3, C, F] -> [3, 3, C, T*F]: output channel t*F + f is task t's filter f.
        num_tasks, kh, kw, cin, cout = kernel.shape
        return tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [kh, kw, cin, num_tasks * cout])

    def _norm(self, x, offset):
        """Per-channel batch norm of the folded tensor (offset already tiled to T*F)."""
        axis = 1 if self.channels_first else 3
        if self.fused_norm:
            channels = x.shape[axis]
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, tf.ones([channels], x.dtype), offset, epsilon=norm_lib.BATCH_NORM_EPSILON,
                data_format="NCHW" if self.channels_first else "NHWC", is_training=True)
            return y
        axes = [0, 2, 3] if self.channels_first else [0, 1, 2]
        if self.custom_norm and not self.channels_first:
            return norm_lib.batch_norm_over(x, offset, (0, 1, 2))
        mean, variance = norm_lib.exact_moments(x, axes)
        shape = [1, -1, 1, 1] if self.channels_first else [-1]
        return (x - mean) * tf.math.rsqrt(variance + norm_lib.BATCH_NORM_EPSILON) + \
            tf.reshape(offset, shape)

    def _forward(self, inputs, params, shared):  # MetaModel.forward's hook
        if self.norm != "batch_norm":
            raise NotImplementedError("prototype: batch norm only")
        num_tasks, batch = inputs.shape[0], inputs.shape[1]
        size, channels = self.img_size, self.channels
        fmt = "NCHW" if self.channels_first else "NHWC"
        x = tf.reshape(inputs, [num_tasks, batch, size, size, channels])
        if self.channels_first:  # [B, T*C, H, W]
            x = tf.reshape(tf.transpose(x, [1, 0, 4, 2, 3]),
                           [batch, num_tasks * channels, size, size])
        else:  # [B, H, W, T*C]
            x = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]),
                           [batch, size, size, num_tasks * channels])
        stride = 1 if self.max_pool else 2
        bias_shape = [1, -1, 1, 1] if self.channels_first else [-1]
        for i in range(1, 5):
            x = tf.nn.conv2d(x, self._fold_kernel(params[f"conv{i}"]), strides=stride,
                             padding="SAME", data_format=fmt)
            x = x + tf.reshape(params[f"b{i}"], bias_shape)
            offset = tf.tile(shared[f"norm{i}_offset"], [num_tasks])
            x = self.activation(self._norm(x, offset))
            if self.max_pool:
                x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID", data_format=fmt)
        filters = self.num_filters
        if self.channels_first:  # [B, T*F, h, w] -> [T, B, h, w, F]
            h, w = x.shape[2], x.shape[3]
            x = tf.transpose(tf.reshape(x, [batch, num_tasks, filters, h, w]), [1, 0, 3, 4, 2])
        else:  # [B, h, w, T*F] -> [T, B, h, w, F]
            h, w = x.shape[1], x.shape[2]
            x = tf.transpose(tf.reshape(x, [batch, h, w, num_tasks, filters]), [3, 0, 1, 2, 4])
        if self.flatten_head:
            features = tf.reshape(x, [num_tasks, batch, h * w * filters])
        else:
            features = tf.reduce_mean(x, axis=[2, 3])
        return tf.matmul(features, params["w5"]) + params["b5"][:, None, :]


class VmapConvNet(ConvNet):
    """ConvNet whose convolution maps over tasks with tf.vectorized_map (per-task kernels)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, conv_impl="per_task", **kwargs)

        def conv(x, kernels, strides):
            return tf.vectorized_map(
                lambda xk: tf.nn.conv2d(xk[0], xk[1], strides=strides, padding="SAME"),
                (x, kernels))
        self._conv = conv


def im2col_conv2d(x, kernels, strides):
    """3x3 'SAME' convolution of [T, B, H, W, C] with per-task kernels [T, 3, 3, C, C'] as a
    batched matmul of patches (TensorFlow's SAME padding: the extra row/column after)."""
    size = x.shape[2]
    out = -(-size // strides)
    total = max((out - 1) * strides + 3 - size, 0)
    before = total // 2
    padded = tf.pad(x, [[0, 0], [0, 0], [before, total - before], [before, total - before],
                        [0, 0]])
    span = (out - 1) * strides + 1
    patches = tf.concat([padded[:, :, dy:dy + span:strides, dx:dx + span:strides, :]
                         for dy in range(3) for dx in range(3)], axis=-1)
    tasks, batch, channels, outputs = (tf.shape(x)[0], tf.shape(x)[1], x.shape[-1],
                                       kernels.shape[-1])
    flat = tf.reshape(patches, tf.stack([tasks, batch * out * out, 9 * channels]))
    product = tf.matmul(flat, tf.reshape(kernels, tf.stack([tasks, 9 * channels, outputs])))
    return tf.reshape(product, tf.stack([tasks, batch, out, out, outputs]))


class Im2colConvNet(ConvNet):
    """ConvNet whose convolutions are batched matmuls of patches (:func:`im2col_conv2d`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, conv_impl="per_task", **kwargs)
        self._conv = im2col_conv2d


def make_model(variant, kwargs):
    tf.keras.utils.set_random_seed(0)
    if variant in ("current", "xla"):
        return ConvNet(**kwargs)
    if variant in ("per_task", "grouped"):
        return ConvNet(conv_impl=variant, **kwargs)
    if variant == "vmap":
        return VmapConvNet(**kwargs)
    if variant == "im2col":
        return Im2colConvNet(**kwargs)
    if variant.startswith("folded"):
        return FoldedConvNet(fused_norm="fused" in variant, channels_first="nchw" in variant,
                             custom_norm="custom" in variant, **kwargs)
    raise ValueError(f"unknown variant {variant!r}")


def synthetic_batch(dim_input, tasks, n, k, q, seed=0):
    rng = np.random.default_rng(seed)

    def part(per_class):
        x = rng.uniform(size=(tasks, n * per_class, dim_input)).astype(np.float32)
        y = np.tile(np.eye(n, dtype=np.float32), (tasks, per_class, 1))
        return x, y
    (xa, ya), (xb, yb) = part(k), part(q)
    return tuple(tf.constant(v) for v in (xa, ya, xb, yb))


def learner_for(variant, config, first_order):
    kwargs, tasks, n, k, q, lr, steps, clip = CONFIGS[config]
    model = make_model(variant, kwargs)
    spec = InnerLoopSpec(lr, steps, classification=True, update_batch_size=k,
                         first_order=first_order)
    learner = MetaLearner(model, spec, clip_value=clip, jit_compile="xla" in variant)
    return learner, synthetic_batch(model.dim_input, tasks, n, k, q)


def float64_reference(config, first_order):
    """Meta-gradients in float64 (per-task convolutions, the only float64 path on CPU) from
    the same initial weights as every float32 variant: the truth the variants are held to."""
    kwargs, tasks, n, k, q, lr, steps, clip = CONFIGS[config]
    source = make_model("current", kwargs)
    model = ConvNet(conv_impl="per_task", dtype="float64", **kwargs)
    for target, value in zip(model.variables, source.variables):
        target.assign(tf.cast(value, tf.float64))
    spec = InnerLoopSpec(lr, steps, classification=True, update_batch_size=k,
                         first_order=first_order)
    learner = MetaLearner(model, spec, clip_value=clip)
    batch = synthetic_batch(source.dim_input, tasks, n, k, q)
    return learner._meta_grads(*(tf.cast(x, tf.float64) for x in batch))[0]


def max_relative_difference(grads, reference):
    """Largest |g - r| over every weight, relative to the largest |r| of that weight.

    Weights whose float64 gradient is zero up to rounding (the conv biases right before batch
    norm, which the normalisation removes: their exact gradient is 0) are left out: their
    float32 values are rounding noise scaled by the other gradients, whatever the
    formulation."""
    overall = max(float(tf.reduce_max(tf.abs(r))) for r in reference)
    worst = 0.0
    for g, r in zip(grads, reference):
        scale = float(tf.reduce_max(tf.abs(r)))
        if scale <= 1e-9 * overall:
            continue
        difference = tf.abs(tf.cast(g, r.dtype) - r)
        worst = max(worst, float(tf.reduce_max(difference)) / scale)
    return worst


def time_learner(learner, batch, iterations, warmup):
    start = time.perf_counter()
    float(learner.meta_train_step(batch)["post_loss"])
    first = time.perf_counter() - start
    for _ in range(warmup):
        float(learner.meta_train_step(batch)["post_loss"])
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        float(learner.meta_train_step(batch)["post_loss"])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), 1000 * float(np.min(times)), first


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="omniglot_5way_1shot", choices=sorted(CONFIGS))
    parser.add_argument("--variants", default="current,folded,folded_fused")
    parser.add_argument("--orders", default="2,1", help="2: second order, 1: first order")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no_check", action="store_true", help="skip the gradient check")
    parser.add_argument("--intra_op", type=int, default=0, help="0: TensorFlow's default")
    parser.add_argument("--inter_op", type=int, default=0, help="0: TensorFlow's default")
    args = parser.parse_args()
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    onednn_env = {k: v for k, v in os.environ.items() if "ONEDNN" in k or k.startswith("OMP")}
    print(f"TensorFlow {tf.__version__}; {machine_description()}; intra_op "
          f"{args.intra_op or 'default'}, inter_op {args.inter_op or 'default'}; env "
          f"{onednn_env}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{args.config}: median (min) ms of {args.iterations} meta_train_step calls after "
          f"{args.warmup} warm-up calls")
    print("| variant | order | median ms | min ms | first call s | meta-grad error vs float64 |")
    print("|---|---|---|---|---|---|", flush=True)
    for order in (int(o) for o in args.orders.split(",")):
        reference = None
        if not args.no_check:
            reference = float64_reference(args.config, order == 1)
        for variant in args.variants.split(","):
            try:
                learner, batch = learner_for(variant, args.config, order == 1)
                diff = "-"
                if reference is not None:
                    grads = learner._meta_grads(*batch)[0]
                    diff = f"{max_relative_difference(grads, reference):.1e}"
                median, low, first = time_learner(learner, batch, args.iterations,
                                                  args.warmup)
            except (tf.errors.OpError, ValueError, TypeError) as error:
                print(f"| {variant} | {'SO' if order == 2 else 'FO'} | failed: "
                      f"{type(error).__name__}: {str(error).splitlines()[0][:100]} |||",
                      flush=True)
                continue
            print(f"| {variant} | {'SO' if order == 2 else 'FO'} | {median:.1f} | {low:.1f} | "
                  f"{first:.1f} | {diff} |", flush=True)


if __name__ == "__main__":
    main()
