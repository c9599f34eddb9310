"""The one interface between data and the MAML engine.

The engine sees tensors, not data sets: every task source (sinusoid, Omniglot, MiniImagenet)
returns a :class:`TaskBatch` of plain float32 numpy arrays with a leading task dimension. The
original code's vocabulary is kept: ``inputa``/``labela`` are the support set (used by the inner
gradient steps), ``inputb``/``labelb`` the query set (used by the meta-objective).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class TaskBatch(NamedTuple):
    """A meta-batch of tasks.

    Shapes: ``inputa`` [tasks, N*K, dim_input], ``labela`` [tasks, N*K, dim_output],
    ``inputb`` [tasks, N*Q, dim_input], ``labelb`` [tasks, N*Q, dim_output]; classification
    labels are one-hot. ``task_info`` carries per-task metadata a baseline may need (e.g. the
    sinusoid's amplitude and phase for the oracle), or None.

    Example:
        >>> import numpy as np
        >>> from data_generators.base import TaskBatch
        >>> meta_batch_size, num_classes, K, Q, dim_input = 4, 5, 1, 1, 784  # 5-way 1-shot
        >>> batch = TaskBatch(
        ...     inputa=np.zeros((meta_batch_size, num_classes * K, dim_input), np.float32),
        ...     labela=np.zeros((meta_batch_size, num_classes * K, num_classes), np.float32),
        ...     inputb=np.zeros((meta_batch_size, num_classes * Q, dim_input), np.float32),
        ...     labelb=np.zeros((meta_batch_size, num_classes * Q, num_classes), np.float32))
        >>> batch.inputa.shape, batch.labelb.shape, batch.task_info
        ((4, 5, 784), (4, 5, 5), None)
    """

    inputa: np.ndarray
    labela: np.ndarray
    inputb: np.ndarray
    labelb: np.ndarray
    task_info: Optional[np.ndarray] = None


class DataError(ValueError):
    """Raised for missing, truncated or inconsistent data, always naming the file or flag."""
