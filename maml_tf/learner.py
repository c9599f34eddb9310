"""Binds a model, an optimizer and the algorithm into traced-once ``tf.function`` steps.

The gradient computations (pure functions in :mod:`maml_tf.maml`) are compiled separately
from the optimizer update so XLA can be switched on for them alone: Keras' optimizer update
stays in a plain ``tf.function``.

Each training step applies its update only when the loss and every gradient are finite and
reports ``finite``: a diverging run (e.g. a too large ``--meta_lr``) is stopped by the trainer
with its weights still finite, so no checkpoint ever holds NaN.
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from maml_tf import maml
from maml_tf.maml import InnerLoopSpec

# The original's meta-optimizer is ``tf.train.AdamOptimizer(meta_lr)``, whose epsilon is 1e-8;
# Keras' Adam defaults to 1e-7. The update formula is otherwise the same (tests/test_maml_math.py
# holds our step to TF1's). It matters only where gradients are near 1e-7: on the 20-way
# Omniglot run's, a step changes by a median 3e-6 of itself (docs/RESULTS.md, session 36).
TF1_ADAM_EPSILON = 1e-8


def _as_tensors(batch, dtype):
    return tuple(tf.convert_to_tensor(x, dtype=dtype) for x in batch[:4])


class MetaLearner:
    """Meta-training (MAML or the pretraining baseline) and evaluation of one model.

    The maths is :mod:`maml_tf.maml` on the shared core :mod:`maml_tf.core`; this class adds
    Adam, the finite-update guard and the traced functions.

    Example:
        >>> import numpy as np
        >>> from maml_tf.learner import MetaLearner
        >>> from maml_tf.maml import InnerLoopSpec
        >>> from maml_tf.models import FullyConnectedNet
        >>> spec = InnerLoopSpec(update_lr=0.01, num_updates=1, classification=False)
        >>> learner = MetaLearner(FullyConnectedNet(1, 1, (40, 40)), spec, meta_lr=0.001)
        >>> rng = np.random.default_rng(0)   # 4 tasks, K = 10: inputa, labela, inputb, labelb
        >>> batch = tuple(rng.uniform(-5, 5, [4, 10, 1]) for _ in range(4))
        >>> metrics = learner.meta_train_step(batch)
        >>> sorted(metrics), bool(metrics["finite"])
        (['finite', 'post_loss', 'pre_loss'], True)
        >>> learner.evaluate(batch, num_steps=5)["losses"].shape      # [tasks, 1 + 5]
        (4, 6)
    """

    def __init__(self, model, spec: InnerLoopSpec, meta_lr: float = 0.001,
                 clip_value: Optional[float] = None, jit_compile: bool = False,
                 task_groups: int = 1):
        self.model = model
        self.spec = spec
        self.clip_value = clip_value
        # Independent groups of tasks for the meta-gradient and evaluation (speed only:
        # maml.over_task_groups); 1 computes the whole meta-batch as one.
        self.task_groups = task_groups
        self.optimizer = keras.optimizers.Adam(learning_rate=meta_lr, epsilon=TF1_ADAM_EPSILON)
        self.optimizer.build(model.trainable_variables)
        self._meta_grads = tf.function(self._meta_grads_impl, jit_compile=jit_compile)
        self._pretrain_grads = tf.function(self._pretrain_grads_impl, jit_compile=jit_compile)
        self._meta_step = tf.function(self._meta_step_impl)
        self._pretrain_step = tf.function(self._pretrain_step_impl)
        self._evaluate = {}
        self._jit_compile = jit_compile
        # Many iterations per call (see meta_train_steps): compiled whole with XLA when the
        # gradients are, so the Adam update joins the fused loop.
        self._meta_steps = tf.function(self._steps_impl(meta=True), jit_compile=jit_compile)
        self._pretrain_steps = tf.function(self._steps_impl(meta=False), jit_compile=jit_compile)

    # -- traced bodies ----------------------------------------------------------------------
    def _meta_grads_impl(self, inputa, labela, inputb, labelb):
        return maml.meta_gradients(self.model, (inputa, labela, inputb, labelb), self.spec,
                                   self.clip_value, self.task_groups)

    def _pretrain_grads_impl(self, inputa, labela):
        return maml.pretrain_gradients(self.model, (inputa, labela), self.spec, self.clip_value,
                                       self.task_groups)

    def _apply_if_finite(self, grads, metrics):
        checks = [tf.reduce_all(tf.math.is_finite(t)) for t in list(grads) + list(metrics.values())
                  if t.dtype.is_floating]
        finite = tf.reduce_all(tf.stack(checks))

        def apply():
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        return dict(metrics, finite=finite)

    def _meta_step_impl(self, inputa, labela, inputb, labelb):
        grads, metrics = self._meta_grads(inputa, labela, inputb, labelb)
        return self._apply_if_finite(grads, metrics)

    def _pretrain_step_impl(self, inputa, labela):
        grads, metrics = self._pretrain_grads(inputa, labela)
        return self._apply_if_finite(grads, metrics)

    def _steps_impl(self, meta: bool):
        """An in-graph loop of steps over stacked batches [n, tasks, ...] that stops before
        the first non-finite step (which is not applied). Returns the number applied and the
        metrics of the last step computed."""
        grads_fn = self._meta_grads_impl if meta else self._pretrain_grads_impl
        num_inputs = 4 if meta else 2

        def steps(*stacked):
            def step(i):
                grads, metrics = grads_fn(*(x[i] for x in stacked[:num_inputs]))
                return self._apply_if_finite(grads, metrics)

            # The first step runs before the loop: its metrics are the loop's initial state.
            computed, last = tf.while_loop(
                lambda i, last: tf.logical_and(i < tf.shape(stacked[0])[0], last["finite"]),
                lambda i, last: (i + 1, step(i)), (tf.constant(1), step(0)))
            # Every computed step was applied except a non-finite last one.
            return computed - 1 + tf.cast(last["finite"], tf.int32), last
        return steps

    # -- public API -------------------------------------------------------------------------
    def meta_train_step(self, batch) -> dict:
        """One Adam step on the query loss after ``num_updates`` inner steps (skipped, with
        ``finite`` False in the result, when the loss or a gradient is not finite)."""
        return self._meta_step(*_as_tensors(batch, self.model.dtype))

    def pretrain_step(self, batch) -> dict:
        """One Adam step on the support loss (the 'pretrained on all tasks' baseline); skipped
        like :meth:`meta_train_step` when not finite."""
        inputa, labela = _as_tensors(batch, self.model.dtype)[:2]
        return self._pretrain_step(inputa, labela)

    def meta_train_steps(self, stacked_batch) -> tuple[int, dict]:
        """``n`` meta-training steps in one call, on batches stacked as [n, tasks, ...].

        Why: a sinusoid step is about a millisecond of arithmetic, so calling a
        ``tf.function`` once per iteration spends as long again in Python dispatch; one call
        for many iterations (Keras' ``steps_per_execution``) removes that. Every step is the
        same as :meth:`meta_train_step`'s, in the same order; the loop stops before the first
        non-finite step. Returns (steps applied, metrics of the last step computed).
        """
        count, last = self._meta_steps(*_as_tensors(stacked_batch, self.model.dtype))
        return int(count), last

    def pretrain_steps(self, stacked_batch) -> tuple[int, dict]:
        """:meth:`meta_train_steps` for the pretraining baseline."""
        inputa, labela = _as_tensors(stacked_batch, self.model.dtype)[:2]
        count, last = self._pretrain_steps(inputa, labela)
        return int(count), last

    def evaluate(self, batch, num_steps: int) -> dict:
        """Per-task values before and after each of ``num_steps`` steps, as numpy arrays."""
        if num_steps not in self._evaluate:
            def body(inputa, labela, inputb, labelb, steps=num_steps):
                return maml.over_task_groups(
                    lambda part: maml.evaluate_adaptation(self.model, part, self.spec, steps),
                    (inputa, labela, inputb, labelb), self.task_groups)
            self._evaluate[num_steps] = tf.function(body, jit_compile=self._jit_compile)
        result = self._evaluate[num_steps](*_as_tensors(batch, self.model.dtype))
        return {k: v.numpy() for k, v in result.items()}

    def weights_finite(self) -> bool:
        """Whether every weight of the model is finite (test mode refuses others)."""
        values = [tf.convert_to_tensor(v) for v in self.model.variables]
        return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in values
                   if v.dtype.is_floating)

    def set_meta_lr(self, meta_lr: float) -> float:
        """Sets Adam's learning rate (restored from a checkpoint) to ``meta_lr``; returns the
        value it had, so a caller can report a change."""
        previous = float(self.optimizer.learning_rate.numpy())
        self.optimizer.learning_rate.assign(meta_lr)
        return previous

    def tracing_counts(self) -> dict:
        """How often each step was traced (a retrace per call would be a bug)."""
        counts = {"meta_step": self._meta_step.experimental_get_tracing_count(),
                  "pretrain_step": self._pretrain_step.experimental_get_tracing_count()}
        for steps, fn in self._evaluate.items():
            counts[f"evaluate_{steps}"] = fn.experimental_get_tracing_count()
        return counts
