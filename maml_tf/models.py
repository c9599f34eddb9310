"""Keras models that own MAML's weights and expose a functional, task-batched forward pass.

Model-agnostic means: a new architecture plugs in by creating its weights (adapted ones in
``self.adapted``, meta-learned-only ones such as normalisation offsets in ``self.shared``) and
writing ``forward(inputs, params=..., shared=...)`` (the protocol of :mod:`maml_tf.core`,
inputs first, as the RL policy's). Nothing else in the engine knows the architecture.

Why task-batched: a meta-batch of T tasks is processed in one computation. Every adapted
weight carries a leading task dimension (the meta-parameters tiled T times, then each task's
fast weights), dense layers are batched matmuls and convolutions are grouped convolutions with
the task dimension folded into the channels. Because tasks never interact, the gradient of the
*sum* of the task losses with respect to the tiled weights is exactly the per-task gradient,
so one tape gives every task's inner step at once. This was measured at 1.4-2x faster than a
per-task loop and traces in seconds instead of minutes (see docs/RESULTS.md). The conv net can
go further and keep the tasks folded into the channels through all four blocks
(``conv_impl="folded"``, :func:`folded_conv_blocks`), which saves the layout copies around
every convolution.

Weight names and initialisers follow the original: ``w1..`` / ``b1..`` for fully connected
nets (truncated normal, std 0.01; zero biases), ``conv1..conv4`` / ``b1..b4`` (Glorot uniform)
and ``w5`` / ``b5`` for the conv head (standard normal for the pooled Omniglot head, Glorot
for the flattened MiniImagenet head).
"""
from __future__ import annotations

import functools
import os
import re
from typing import Optional, Sequence

import keras
import tensorflow as tf
from absl import logging
from numpy import prod as np_prod

from maml_tf import core
from maml_tf import norm as norm_lib
from maml_tf import pooling


class MetaModel(keras.Model):
    """Base class: weight bookkeeping shared by every architecture.

    ``inputs`` of ``forward`` are [tasks, examples, dim_input] (flattened, as the original fed
    them); outputs are [tasks, examples, dim_output].

    Example::

        model = FullyConnectedNet(1, 1, (40, 40))
        params = model.tiled_parameters(5)                   # 5 tasks
        outputs = model.forward(inputs, params=params)       # inputs [5, K, 1]
    """

    def __init__(self, dim_input: int, dim_output: int, norm: str, dtype="float32",
                 activation=tf.nn.relu, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        # ReLU as the original; gradient checks swap in tanh (finite differences and ReLU
        # kinks do not mix).
        self.activation = activation
        if norm not in norm_lib.NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {norm_lib.NORMS}")
        self.dim_input = dim_input
        self.dim_output = dim_output
        self.norm = norm
        self.adapted: dict[str, keras.Variable] = {}
        self.shared: dict[str, keras.Variable] = {}

    # -- weight creation -------------------------------------------------------------------
    def _adapted_weight(self, name, shape, initializer):
        self.adapted[name] = self._named_weight(name, shape, initializer)

    def _named_weight(self, name, shape, initializer):
        """A weight that is also an attribute of the model.

        The attribute is what makes ``tf.train.Checkpoint`` save it under the model
        (``model/<name>``): Keras 3 does not expose weights held only in a dict as checkpoint
        dependencies.
        """
        variable = self.add_weight(name=name, shape=shape, initializer=initializer,
                                   dtype=self.dtype)
        setattr(self, name, variable)
        return variable

    def _norm_weights(self, scope: str, channels: int):
        """Offset (batch and layer norm) and scale (layer norm only), as contrib's layers."""
        if self.norm in ("batch_norm", "layer_norm"):
            self.shared[f"{scope}_offset"] = self._named_weight(
                f"{scope}_offset", (channels,), "zeros")
        if self.norm == "layer_norm":
            self.shared[f"{scope}_scale"] = self._named_weight(
                f"{scope}_scale", (channels,), "ones")

    # -- functional interface ----------------------------------------------------------------
    def meta_parameters(self) -> dict:
        """The adapted weights as tensors (``variable.value``) the outer tape can see."""
        return {name: var.value for name, var in self.adapted.items()}

    def shared_parameters(self) -> dict:
        return {name: var.value for name, var in self.shared.items()}

    def tiled_parameters(self, num_tasks) -> dict:
        """Meta-parameters repeated along a new leading task axis (one copy per task)."""
        return core.tile_params(self.meta_parameters(), num_tasks)

    def forward(self, inputs, params: Optional[dict] = None, shared: Optional[dict] = None):
        """Task-batched forward pass with any adapted ``params`` (default: the model's own,
        tiled to the inputs' tasks) and normalisation parameters ``shared`` (default: the
        model's)."""
        if params is None:
            params = self.tiled_parameters(tf.shape(inputs)[0])
        return self._forward(inputs, params, self._shared(shared))

    def _forward(self, inputs, params: dict, shared: dict):
        raise NotImplementedError

    def call(self, inputs):
        """Single-task forward with the model's own weights: [examples, dim_input]."""
        return self.forward(inputs[None])[0]

    def summary(self, *args, **kwargs):
        """Keras' summary (totals) followed by every weight, adapted or only meta-learned."""
        super().summary(*args, **kwargs)
        print_fn = kwargs.get("print_fn") or print
        print_fn(self.weights_table())

    def weights_table(self) -> str:
        rows = [f"{'weight':<14}{'shape':<22}{'params':>9}  role"]
        for role, weights in (("adapted in the inner loop", self.adapted),
                              ("meta-learned only", self.shared)):
            for name, var in weights.items():
                rows.append(f"{name:<14}{str(tuple(var.shape)):<22}"
                            f"{int(np_prod(var.shape)):>9}  {role}")
        return "\n".join(rows)

    def _shared(self, shared):
        return self.shared_parameters() if shared is None else shared


def _dense(x, w, b=None):
    """Task-batched dense layer: x [T, N, i], w [T, i, o], b [T, o] (None: no bias)."""
    y = tf.matmul(x, w)
    return y if b is None else y + b[:, None, :]


class FullyConnectedNet(MetaModel):
    """The original's ``construct_fc_weights`` / ``forward_fc``.

    Sinusoid: 1-40-40-1. Omniglot without convolutions: 784-256-128-64-64-N. Every hidden layer
    is normalised (if ``norm`` asks for it) and passed through ReLU; the output is linear.
    """

    def __init__(self, dim_input, dim_output, dim_hidden: Sequence[int] = (40, 40),
                 norm="None", dtype="float32", activation=tf.nn.relu, **kwargs):
        super().__init__(dim_input, dim_output, norm, dtype=dtype, activation=activation,
                         **kwargs)
        self.dim_hidden = tuple(dim_hidden)
        sizes = (dim_input,) + self.dim_hidden + (dim_output,)
        init = keras.initializers.TruncatedNormal(stddev=0.01)
        for i in range(len(sizes) - 1):
            self._adapted_weight(f"w{i + 1}", (sizes[i], sizes[i + 1]), init)
            self._adapted_weight(f"b{i + 1}", (sizes[i + 1],), "zeros")
        for i, width in enumerate(self.dim_hidden):
            self._norm_weights(f"norm{i + 1}", width)
        self.built = True

    def _forward(self, inputs, params, shared):
        hidden = inputs
        for i in range(len(self.dim_hidden)):
            bias = None if norm_lib.cancels_bias(self.norm) else params[f"b{i + 1}"]
            hidden = _dense(hidden, params[f"w{i + 1}"], bias)
            hidden = norm_lib.normalize(hidden, self.norm, shared, f"norm{i + 1}",
                                        self.activation)
        last = len(self.dim_hidden) + 1
        return _dense(hidden, params[f"w{last}"], params[f"b{last}"])


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


def _fallback_message(reason: str) -> str:
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
        hidden = activation(hidden) if activation is not None else hidden
        if max_pool:
            hidden = pooling.max_pool_2x2(hidden)
    height, width = hidden.shape[1], hidden.shape[2]
    hidden = tf.reshape(hidden, [batch, height, width, num_tasks, filters])
    return tf.transpose(hidden, [3, 0, 1, 2, 4])


def fused_batch_norm_default(max_pool: bool) -> bool:
    """Whether main.py's conv nets use the fused batch norm: where it measured faster, the
    nets with max-pooling, i.e. the MiniImagenet architecture's 84 x 84 activations. First
    order: about 15% less time per iteration (session 8, AVX2 EPYC). Second order: about 10%
    less on the AVX-512 Zen 5 machine (session 14, every alternating round), no consistent
    difference either way on the AVX2 one (session 8). Not on the strided Omniglot nets (no
    faster; slower in second order)."""
    return max_pool


class ConvNet(MetaModel):
    """The original's ``construct_conv_weights`` / ``forward_conv``.

    Four blocks of 3x3 'SAME' convolution + bias, norm, ReLU (the bias is left out before
    batch norm, which cancels it: :func:`maml_tf.norm.cancels_bias`). Without ``max_pool`` the
    convolutions are strided 2x2 (Omniglot); with it they have stride 1 and are followed by a
    2x2 'VALID' max-pool (MiniImagenet). The head averages over space (Omniglot) or, with
    ``flatten_head`` (the original's ``datasource == 'miniimagenet'``), flattens; then one
    dense layer.

    ``conv_impl`` chooses how the tasks' convolutions run, never what they compute (tests
    hold every path to the per-task one): "folded" (tasks folded into the channels once for
    all blocks), "grouped" (folded and unfolded around each convolution), "per_task" (one
    convolution per task: the only path for float64 and without oneDNN on CPU) or "auto":
    ``AUTO_CONV_IMPL`` where grouped-convolution gradients exist, "per_task" elsewhere.

    ``fused_batch_norm`` asks for batch norm as one fused kernel where that applies (batch
    norm on the folded path in float32; ``self.fused_batch_norm`` says whether it does): the
    same maths (:func:`maml_tf.norm.fused_batch_norm`), faster where activations are large;
    :func:`fused_batch_norm_default` says where it is used by default.

    Example::

        model = ConvNet(5, img_size=84, channels=3, num_filters=32, max_pool=True,
                        flatten_head=True, fused_batch_norm=True)    # MiniImagenet, as main.py
        logits = model.forward(tf.zeros([4, 10, 84 * 84 * 3]))    # [tasks, examples, 5]
    """

    def __init__(self, dim_output, img_size: int = 28, channels: int = 1,
                 num_filters: int = 64, max_pool=False, flatten_head=False, norm="batch_norm",
                 dtype="float32", activation=tf.nn.relu, conv_impl: str = "auto",
                 fused_batch_norm: bool = False, **kwargs):
        super().__init__(img_size * img_size * channels, dim_output, norm, dtype=dtype,
                         activation=activation, **kwargs)
        self.img_size, self.channels = img_size, channels
        self.num_filters, self.max_pool = num_filters, max_pool
        self.flatten_head = flatten_head
        if conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
        if conv_impl != "per_task":
            available, reason = grouped_conv_gradients_available(self.dtype)
            if available:
                conv_impl = AUTO_CONV_IMPL if conv_impl == "auto" else conv_impl
            elif conv_impl != "auto":
                raise ValueError(_fallback_message(reason).replace(
                    "the conv net uses one convolution per task instead",
                    f"conv_impl={conv_impl!r} cannot be used; 'auto' or 'per_task' can"))
            else:
                conv_impl = "per_task"
                if self.dtype != "float64":  # float64 never has them on CPU: nothing to say
                    # one line per process, however many models are built
                    logging.log_first_n(logging.WARNING, _fallback_message(reason), 1)
        self.conv_impl = conv_impl
        self.fused_batch_norm = bool(fused_batch_norm and norm == "batch_norm"
                                     and conv_impl == "folded" and self.dtype == "float32")
        self._conv = per_task_conv2d if conv_impl == "per_task" else grouped_conv2d
        glorot = keras.initializers.GlorotUniform()
        in_channels = channels
        for i in range(1, 5):
            self._adapted_weight(f"conv{i}", (3, 3, in_channels, num_filters), glorot)
            self._adapted_weight(f"b{i}", (num_filters,), "zeros")
            self._norm_weights(f"norm{i}", num_filters)
            in_channels = num_filters
        if self.flatten_head:
            spatial = img_size
            for _ in range(4):
                spatial = spatial // 2 if max_pool else -(-spatial // 2)
            self._adapted_weight("w5", (num_filters * spatial * spatial, dim_output), glorot)
        else:
            self._adapted_weight("w5", (num_filters, dim_output),
                                 keras.initializers.RandomNormal(stddev=1.0))
        self._adapted_weight("b5", (dim_output,), "zeros")
        self.built = True

    def _forward(self, inputs, params, shared):
        num_tasks, batch = tf.shape(inputs)[0], tf.shape(inputs)[1]
        hidden = tf.reshape(inputs, tf.stack(
            [num_tasks, batch, self.img_size, self.img_size, self.channels]))
        if self.conv_impl == "folded":
            hidden = folded_conv_blocks(hidden, params, shared, self.norm, self.activation,
                                        self.max_pool, self.fused_batch_norm)
        else:
            hidden = self._blocks(hidden, params, shared)
        if self.flatten_head:
            features = tf.reshape(hidden, tf.stack([num_tasks, batch, -1]))
        else:
            features = tf.reduce_mean(hidden, axis=[2, 3])
        return _dense(features, params["w5"], params["b5"])

    def _blocks(self, hidden, params, shared):
        """The four blocks on [T, B, H, W, C] activations, one (grouped or per-task)
        convolution at a time."""
        stride = 1 if self.max_pool else 2
        for i in range(1, 5):
            hidden = self._conv(hidden, params[f"conv{i}"], stride)
            if not norm_lib.cancels_bias(self.norm):
                hidden = hidden + params[f"b{i}"][:, None, None, None, :]
            hidden = norm_lib.normalize(hidden, self.norm, shared, f"norm{i}", self.activation)
            if self.max_pool:
                hidden = max_pool_2x2(hidden)
        return hidden
