"""Sinusoid regression tasks, exactly as the original ``generate_sinusoid_batch``.

Amplitude U[0.1, 5.0], phase U[0, pi], inputs U[-5, 5], y = A sin(x - phase). Each task draws
2K points: the first K are the support set ``a``, the rest the query set ``b``. Random numbers
come from a ``numpy.random.RandomState`` in the original's call order (amplitudes, phases,
then each task's inputs), so seeding it with 1 reproduces the original's 600 test tasks.
The oracle baseline appends the task's amplitude and phase to every input (dim_input 3).
"""
from __future__ import annotations

import numpy as np

from data_generators.base import TaskBatch

AMP_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, np.pi)
INPUT_RANGE = (-5.0, 5.0)


class SinusoidTasks:
    """Infinite supply of sinusoid tasks; ``num_samples_per_class`` = 2K as in the original.

    Example (K = 5 shots, meta_batch_size 4; ``task_info`` holds amplitude and phase):
        >>> import numpy as np
        >>> from data_generators.sinusoid import SinusoidTasks
        >>> tasks = SinusoidTasks(update_batch_size=5, rng=np.random.RandomState(1))
        >>> batch = tasks.sample(4)
        >>> batch.inputa.shape, batch.labela.shape, batch.inputb.shape, batch.task_info.shape
        ((4, 5, 1), (4, 5, 1), (4, 5, 1), (4, 2))
        >>> amp, phase = batch.task_info[0]
        >>> bool(np.allclose(batch.labela[0], amp * np.sin(batch.inputa[0] - phase), atol=1e-5))
        True
        >>> SinusoidTasks(5, oracle=True).sample(4).inputa.shape  # x, amplitude, phase
        (4, 5, 3)
    """

    num_classes = 1  # regression: the original's generators report 1 here
    dim_output = 1

    def __init__(self, update_batch_size: int, oracle: bool = False,
                 rng: np.random.RandomState | None = None):
        if update_batch_size < 1:
            raise ValueError(f"update_batch_size must be >= 1, got {update_batch_size}")
        self.update_batch_size = update_batch_size
        self.num_samples_per_class = 2 * update_batch_size
        self.oracle = oracle
        self.dim_input = 3 if oracle else 1
        self.rng = rng if rng is not None else np.random.RandomState()

    def generate(self, batch_size: int, input_idx: int | None = None):
        """The original's raw output: (inputs, outputs, amp, phase), inputs [B, 2K, 1].

        ``input_idx`` (used for the qualitative plots) replaces the points from that index on
        with an even grid over the input range, as the original did.
        """
        amp = self.rng.uniform(AMP_RANGE[0], AMP_RANGE[1], [batch_size])
        phase = self.rng.uniform(PHASE_RANGE[0], PHASE_RANGE[1], [batch_size])
        inputs = self.rng.uniform(INPUT_RANGE[0], INPUT_RANGE[1],
                                  [batch_size, self.num_samples_per_class, 1])
        if input_idx is not None:
            inputs[:, input_idx:, 0] = np.linspace(
                INPUT_RANGE[0], INPUT_RANGE[1], num=self.num_samples_per_class - input_idx)
        outputs = amp[:, None, None] * np.sin(inputs - phase[:, None, None])
        return inputs, outputs, amp, phase

    def sample(self, batch_size: int) -> TaskBatch:
        """A batch of tasks split into support (first K points) and query (the rest)."""
        inputs, outputs, amp, phase = self.generate(batch_size)
        if self.oracle:
            inputs = append_oracle_inputs(inputs, amp, phase)
        k = self.update_batch_size
        info = np.stack([amp, phase], axis=1).astype(np.float32)
        return TaskBatch(inputs[:, :k].astype(np.float32), outputs[:, :k].astype(np.float32),
                         inputs[:, k:].astype(np.float32), outputs[:, k:].astype(np.float32),
                         info)


def append_oracle_inputs(inputs: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """The oracle's input: x, amplitude, phase (the original's ``--baseline=oracle``)."""
    batch, points, _ = inputs.shape
    extra = np.broadcast_to(np.stack([amp, phase], axis=1)[:, None, :], (batch, points, 2))
    return np.concatenate([inputs, extra], axis=2)
