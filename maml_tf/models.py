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
(``conv_impl="folded"``, :mod:`maml_tf.conv_paths`), which saves the layout copies around
every convolution.

Weight names and initialisers follow the original: ``w1..`` / ``b1..`` for fully connected
nets (truncated normal, std 0.01; zero biases), ``conv1..conv4`` / ``b1..b4`` (Glorot uniform)
and ``w5`` / ``b5`` for the conv head (standard normal for the pooled Omniglot head, Glorot
for the flattened MiniImagenet head).
"""
from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf
from absl import logging
from numpy import prod as np_prod

from maml_tf import core
from maml_tf import norm as norm_lib
from maml_tf.conv_paths import (AUTO_CONV_IMPL, CONV_IMPLS, fallback_message,
                                folded_conv_blocks, grouped_conv2d,
                                grouped_conv_gradients_available, max_pool_2x2,
                                per_task_conv2d)


class MetaModel(keras.Model):
    """Base class: weight bookkeeping shared by every architecture.

    ``inputs`` of ``forward`` are [tasks, examples, dim_input] (flattened, as the original fed
    them); outputs are [tasks, examples, dim_output].

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.models import FullyConnectedNet
        >>> model = FullyConnectedNet(1, 1, (40, 40))
        >>> params = model.tiled_parameters(5)                   # 5 tasks
        >>> params["w2"].shape
        TensorShape([5, 40, 40])
        >>> model.forward(tf.zeros([5, 10, 1]), params=params).shape   # inputs [5, K, 1]
        TensorShape([5, 10, 1])
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

    ``factored_inner_step`` lets MAML's one-step inner loop keep each task's adapted weights
    as the factors of their gradient (:mod:`maml_tf.factored`): the same maths, faster on
    CPUs; False always materialises them, as the generic path does for every model.

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.models import FullyConnectedNet
        >>> model = FullyConnectedNet(1, 1, dim_hidden=(40, 40))     # the sinusoid's 1-40-40-1
        >>> {name: tuple(weight.shape) for name, weight in model.adapted.items()}
        {'w1': (1, 40), 'b1': (40,), 'w2': (40, 40), 'b2': (40,), 'w3': (40, 1), 'b3': (1,)}
        >>> model(tf.zeros([10, 1])).shape        # one task's 10 points, the model's own weights
        TensorShape([10, 1])
    """

    def __init__(self, dim_input, dim_output, dim_hidden: Sequence[int] = (40, 40),
                 norm="None", dtype="float32", activation=tf.nn.relu,
                 factored_inner_step: bool = True, **kwargs):
        super().__init__(dim_input, dim_output, norm, dtype=dtype, activation=activation,
                         **kwargs)
        self.dim_hidden = tuple(dim_hidden)
        self.factored_inner_step = factored_inner_step
        sizes = (dim_input,) + self.dim_hidden + (dim_output,)
        init = keras.initializers.TruncatedNormal(stddev=0.01)
        for i in range(len(sizes) - 1):
            self._adapted_weight(f"w{i + 1}", (sizes[i], sizes[i + 1]), init)
            self._adapted_weight(f"b{i + 1}", (sizes[i + 1],), "zeros")
        for i, width in enumerate(self.dim_hidden):
            self._norm_weights(f"norm{i + 1}", width)
        self.built = True

    @property
    def num_layers(self) -> int:
        return len(self.dim_hidden) + 1

    def layer_has_bias(self, layer: int) -> bool:
        """Whether dense layer ``layer`` (1-based) adds its bias ``b{layer}``: not right before
        batch norm, which cancels it (:func:`maml_tf.norm.cancels_bias`)."""
        return layer == self.num_layers or not norm_lib.cancels_bias(self.norm)

    def forward_layers(self, inputs, affine, shared: Optional[dict] = None):
        """The network with each layer's affine map supplied: ``affine(layer, hidden)``
        returns layer ``layer``'s (1-based) pre-activation, [tasks, examples, width]; norms
        and activations are the model's. How :mod:`maml_tf.factored` evaluates the net with
        weights in factored form; :meth:`forward` is this with the task-batched dense layer.

        Example:
            >>> import numpy as np
            >>> import tensorflow as tf
            >>> from maml_tf.models import FullyConnectedNet
            >>> model = FullyConnectedNet(1, 1, (40, 40))
            >>> params, inputs = model.tiled_parameters(2), tf.ones([2, 5, 1])
            >>> outputs = model.forward_layers(
            ...     inputs, lambda layer, h: tf.matmul(h, params[f"w{layer}"])
            ...     + params[f"b{layer}"][:, None, :])
            >>> np.allclose(outputs, model.forward(inputs, params=params))
            True
        """
        shared = self._shared(shared)
        hidden = inputs
        for i in range(len(self.dim_hidden)):
            hidden = norm_lib.normalize(affine(i + 1, hidden), self.norm, shared,
                                        f"norm{i + 1}", self.activation)
        return affine(self.num_layers, hidden)

    def _forward(self, inputs, params, shared):
        def affine(layer, hidden):
            bias = params[f"b{layer}"] if self.layer_has_bias(layer) else None
            return _dense(hidden, params[f"w{layer}"], bias)
        return self.forward_layers(inputs, affine, shared)


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
    :func:`maml_tf.conv_paths.fused_batch_norm_default` says where it is used by default.

    Example:
        >>> import tensorflow as tf
        >>> from maml_tf.models import ConvNet
        >>> model = ConvNet(5, img_size=84, channels=3, num_filters=32, max_pool=True,
        ...                 flatten_head=True, fused_batch_norm=True)   # MiniImagenet, as main.py
        >>> tuple(model.adapted["w5"].shape)     # 32 filters on the 5 x 5 map left by 4 pools
        (800, 5)
        >>> model.forward(tf.zeros([2, 3, 84 * 84 * 3])).shape     # [tasks, examples, 5]
        TensorShape([2, 3, 5])
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
                raise ValueError(fallback_message(reason).replace(
                    "the conv net uses one convolution per task instead",
                    f"conv_impl={conv_impl!r} cannot be used; 'auto' or 'per_task' can"))
            else:
                conv_impl = "per_task"
                if self.dtype != "float64":  # float64 never has them on CPU: nothing to say
                    # one line per process, however many models are built
                    logging.log_first_n(logging.WARNING, fallback_message(reason), 1)
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
