"""What the engine needs of a run's data, as typing protocols.

Why: the engine (:mod:`maml_tf.experiment`, the learner, the trainer, the evaluation) sees
tensors, never data sets. Which data set serves a run is decided on the entry side: main.py
passes ``data_generators.factory.build_task_sources`` to :func:`maml_tf.experiment.run`, and a
test or script may pass anything with these attributes. Nothing under ``maml_tf/`` imports
``data_generators``.
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol

from maml_tf.config import ExperimentConfig


class ModelShape(Protocol):
    """The sizes the model is built for: input and output sizes, and for images their side
    and channel count (0 for vectors).

    Example:
        >>> from types import SimpleNamespace
        >>> from maml_tf.config import ExperimentConfig
        >>> from maml_tf.experiment import build_model
        >>> shape = SimpleNamespace(dim_input=1, dim_output=1, img_size=0, channels=0)  # sinusoid
        >>> model = build_model(ExperimentConfig(datasource="sinusoid"), shape)
        >>> type(model).__name__, model.dim_input, model.dim_output
        ('FullyConnectedNet', 1, 1)
    """

    dim_input: int
    dim_output: int
    img_size: int
    channels: int


class TaskSources(ModelShape, Protocol):
    """A run's batches: ``train()`` and ``val()`` give one meta-batch, ``test(n)`` the next
    ``n`` test tasks in a fixed order (each a TaskBatch-like tuple: inputs and labels of the
    support and query sets, arrays with a leading task axis); ``resume(itr)`` is called with
    the first iteration of a resumed run before any batch is drawn. Unused ones are None.

    Example:
        >>> from types import SimpleNamespace
        >>> import numpy as np
        >>> batch = tuple(np.zeros([25, 10, 1]) for _ in range(4))  # inputa, labela, inputb, labelb
        >>> sources = SimpleNamespace(dim_input=1, dim_output=1, img_size=0, channels=0,
        ...                           train=lambda: batch, val=None, test=None,
        ...                           resume=lambda itr: None)     # the sinusoid's: no val, test
        >>> sources.resume(0)
        >>> sources.train()[0].shape                  # a meta-batch of 25 tasks, K = 10
        (25, 10, 1)
    """

    train: Optional[Callable[[], tuple]]
    val: Optional[Callable[[], tuple]]
    test: Optional[Callable[[int], tuple]]
    resume: Callable[[int], None]


#: Builds a run's task sources from its configuration (main.py's:
#: ``data_generators.factory.build_task_sources``).
MakeSources = Callable[[ExperimentConfig], TaskSources]
