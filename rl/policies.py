"""Gaussian MLP policy (maml_rl ``MAMLGaussianMLPPolicy``) with a functional forward.

Two ReLU hidden layers of 100, a linear mean, and a state-independent log standard deviation
(initial std 1.0) that the inner step adapts like every other parameter. It follows the model
protocol of :mod:`maml_tf.core`: ``policy.forward(obs, params=...)`` (mean and log-std) and
``policy(obs, params=...)`` (the distribution) evaluate the network with any parameters, which is what MAML needs: the inner
step produces per-task "fast" parameters that are tensors, not variables. Parameters may carry
a leading task dimension K (obs then shaped (K, M, obs_dim)), so one call evaluates every
task's adapted policy at once.
"""
from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import tensorflow as tf


with warnings.catch_warnings():
    # TFP's version check imports distutils (DeprecationWarning on Python 3.11).
    warnings.simplefilter("ignore", DeprecationWarning)
    import tensorflow_probability as tfp

tfd = tfp.distributions


#: Hidden-layer nonlinearities: maml_rl's MAML policies use ReLU; the released point test
#: script's random-initialisation policy kept rllab's default, tanh.
NONLINEARITIES = {"relu": tf.nn.relu, "tanh": tf.nn.tanh}
#: The same nonlinearities on numpy arrays (:meth:`GaussianMLPPolicy.forward_numpy`).
NUMPY_NONLINEARITIES = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh}


class GaussianMLPPolicy(keras.Model):
    """pi(a | s) = N(mean_theta(s), diag(exp(log_std)^2)).

    Example:
        >>> import numpy as np
        >>> from maml_tf import core
        >>> from rl.policies import GaussianMLPPolicy
        >>> policy = GaussianMLPPolicy(obs_dim=2, act_dim=2, hidden_sizes=(8,), seed=1)
        >>> policy.num_params                      # 2*8 + 8, 8*2 + 2, log-std 2
        44
        >>> params = core.tile_params(policy.meta_parameters(), 3)   # 3 tasks
        >>> obs = np.zeros((3, 5, 2), dtype=np.float32)               # (K, M, obs_dim)
        >>> mean, log_std = policy.forward(obs, params=params)
        >>> tuple(mean.shape), float(log_std.numpy().max())           # initial std 1
        ((3, 5, 2), 0.0)
        >>> tuple(policy(obs, params=params).sample(seed=1).shape)
        (3, 5, 2)
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes=(100, 100),
                 init_std: float = 1.0, seed: int | None = None, name: str = "policy",
                 dtype: str = "float32", nonlinearity: str = "relu"):
        super().__init__(name=name, dtype=dtype)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {sorted(NONLINEARITIES)}, "
                             f"got {nonlinearity!r}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.nonlinearity = nonlinearity
        self._activation = NONLINEARITIES[nonlinearity]
        # Xavier-uniform weights and zero biases, as rllab's MLP.
        init = lambda i: keras.initializers.GlorotUniform(None if seed is None else seed + i)
        # One attribute per layer (not a list): tf.train.Checkpoint does not follow Keras 3's
        # tracked lists, and a checkpoint without the hidden layers restores silently.
        for i, size in enumerate(self.hidden_sizes):
            setattr(self, f"hidden_{i}", keras.layers.Dense(
                size, activation=nonlinearity, kernel_initializer=init(i), name=f"hidden_{i}",
                dtype=dtype))
        self.mean_layer = keras.layers.Dense(
            act_dim, kernel_initializer=init(len(self.hidden_sizes)), name="mean",
            dtype=dtype)
        self.log_std = self.add_weight(
            name="log_std", shape=(act_dim,),
            initializer=keras.initializers.Constant(math.log(init_std)), trainable=True,
            dtype=dtype)
        in_dim = obs_dim
        for layer in self.hidden_layers + [self.mean_layer]:  # create variables now
            layer.build((None, in_dim))
            in_dim = layer.units
        self(tf.zeros((1, obs_dim), dtype=dtype))  # marks the model built

    @property
    def hidden_layers(self) -> list:
        return [getattr(self, f"hidden_{i}") for i in range(len(self.hidden_sizes))]

    # ----- parameters -----
    def named_variables(self) -> list:
        """(name, Keras variable) pairs in the canonical (flattening) order."""
        pairs = []
        for i, layer in enumerate(self.hidden_layers):
            pairs += [(f"hidden_{i}/kernel", layer.kernel), (f"hidden_{i}/bias", layer.bias)]
        pairs += [("mean/kernel", self.mean_layer.kernel), ("mean/bias", self.mean_layer.bias),
                  ("log_std", self.log_std)]
        return pairs

    @property
    def param_names(self) -> list:
        return [name for name, _ in self.named_variables()]

    @property
    def param_shapes(self) -> list:
        return [tuple(variable.shape) for _, variable in self.named_variables()]

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(shape) for shape in self.param_shapes))

    def meta_parameters(self) -> dict:
        """Current parameters as tensors. ``variable.value`` because Keras 3 variables are not
        ``tf.Variable``s (``tape.watch`` rejects them); gradients still reach the variables."""
        return {name: variable.value for name, variable in self.named_variables()}

    def get_flat(self) -> tf.Tensor:
        return flatten_params(self.meta_parameters(), self.param_names)

    def set_flat(self, flat) -> None:
        """Assigns a flat vector (e.g. the TRPO result) to the Keras variables."""
        params = self.unflatten(tf.convert_to_tensor(flat, dtype=self.log_std.dtype))
        for name, variable in self.named_variables():
            variable.assign(params[name])

    def unflatten(self, flat: tf.Tensor) -> dict:
        sizes = [int(np.prod(shape)) for shape in self.param_shapes]
        pieces = tf.split(flat, sizes)
        return {name: tf.reshape(piece, shape)
                for name, piece, shape in zip(self.param_names, pieces, self.param_shapes)}

    # ----- forward -----
    def forward(self, obs, params: dict | None = None):
        """Mean (..., act_dim) and log-std broadcast to it. With batched parameters (leading
        dimension K) ``obs`` must be (K, M, obs_dim)."""
        params = self.meta_parameters() if params is None else params
        x = tf.convert_to_tensor(obs, dtype=params["log_std"].dtype)
        for i in range(len(self.hidden_sizes)):
            x = self._activation(tf.matmul(x, params[f"hidden_{i}/kernel"])
                           + tf.expand_dims(params[f"hidden_{i}/bias"], -2))
        mean = tf.matmul(x, params["mean/kernel"]) + tf.expand_dims(params["mean/bias"], -2)
        log_std = tf.broadcast_to(tf.expand_dims(params["log_std"], -2), tf.shape(mean))
        return mean, log_std

    def forward_numpy(self, obs: np.ndarray, params: dict):
        """:meth:`forward` on numpy arrays (``params`` as arrays, e.g. from
        :meth:`numpy_parameters`): mean (..., act_dim) and log-std broadcast to it.

        Why a second forward: the samplers evaluate the policy once per time step for every
        environment at once (about 800 calls per ant batch), a few megaflops each: the
        traced TensorFlow call took 2.8-3.7 ms there, mostly dispatch, and this one 0.4-0.8
        (docs/RESULTS.md, "Throughput", session 25). It only chooses the actions sampled;
        every loss and gradient is computed by :meth:`forward` (the means agree to float32
        rounding, about 5e-7; ``tests/test_rl_sampler_policy.py``).
        """
        activation = NUMPY_NONLINEARITIES[self.nonlinearity]
        x = np.asarray(obs, dtype=params["log_std"].dtype)
        batched = params["log_std"].ndim == 2       # per-task parameters: (K, ...)
        for i in range(len(self.hidden_sizes)):
            x = activation(_dense(x, params[f"hidden_{i}/kernel"],
                                  params[f"hidden_{i}/bias"], batched))
        mean = _dense(x, params["mean/kernel"], params["mean/bias"], batched)
        log_std = params["log_std"][:, None] if batched else params["log_std"]
        return mean, np.broadcast_to(log_std, mean.shape)

    def numpy_parameters(self, params: dict | None = None) -> dict:
        """``params`` (default: the policy's own) as numpy arrays, for :meth:`forward_numpy`."""
        params = self.meta_parameters() if params is None else params
        return {name: np.asarray(value) for name, value in params.items()}

    def call(self, obs, params: dict | None = None):
        """The action distribution (a TFP distribution over the last axis)."""
        mean, log_std = self.forward(obs, params=params)
        return gaussian(mean, log_std)


def gaussian(mean, log_std):
    """Diagonal Gaussian whose log_prob sums over the action dimensions."""
    return tfd.Independent(tfd.Normal(loc=mean, scale=tf.exp(log_std)),
                           reinterpreted_batch_ndims=1)


def _dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, batched: bool) -> np.ndarray:
    """x W + b; per-task (batched) kernels multiply each task's rows (x (K, M, in)).

    Always as a stack of per-task products, never one product over all the rows: a product
    that large (320 x 125 x 100 for the ant) makes numpy's BLAS start its threads, which then
    spin on the cores the environment workers need (the workers' steps took 1.6x as long).
    """
    return np.matmul(x, kernel) + (bias[:, None] if batched else bias)


def flatten_params(params: dict, names: list) -> tf.Tensor:
    return tf.concat([tf.reshape(params[name], [-1]) for name in names], axis=0)

