"""Builds the task sources a run needs from plain configuration values.

Returns callables, so the trainer and the test loop never know which data set they serve:
``train()`` and ``val()`` give one meta-batch, ``test(n)`` gives the next n test tasks in the
original's fixed order.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from data_generators.base import DataError, TaskBatch

# The original's test() called np.random.seed(1) and random.seed(1). Every stream here is a
# private generator (numpy RandomState for sinusoids, random.Random for the task lists), so
# only the value is kept: seeding the global ``random`` module changed nothing.
TEST_SEED = 1


def seed_for_test_mode(cfg) -> int:
    """Seed of test mode's task stream: ``--test_seed`` when given, else the original's 1."""
    return TEST_SEED if cfg.test_seed < 0 else cfg.test_seed


@dataclasses.dataclass
class TaskSources:
    """What the engine draws data from: input/output sizes and one callable per phase.

    ``train()`` and ``val()`` return one meta-batch, ``test(n)`` the next n test tasks; a
    phase the run does not have is None. Built by :func:`build_task_sources`.

    Example (sinusoid regression, 5 shots, meta_batch_size 4; the configuration is any
    object with an ExperimentConfig's attributes):
        >>> from types import SimpleNamespace
        >>> from data_generators.factory import build_task_sources
        >>> cfg = SimpleNamespace(datasource="sinusoid", baseline="", train=True, seed=1,
        ...                       update_batch_size=5, meta_batch_size=4)
        >>> sources = build_task_sources(cfg)
        >>> sources.dim_input, sources.dim_output, sources.val, sources.test
        (1, 1, None, None)
        >>> batch = sources.train()
        >>> batch.inputa.shape, batch.labelb.shape
        ((4, 5, 1), (4, 5, 1))
    """

    dim_input: int
    dim_output: int
    train: Optional[Callable[[], TaskBatch]] = None
    val: Optional[Callable[[], TaskBatch]] = None
    test: Optional[Callable[[int], TaskBatch]] = None
    # Called with the first iteration of a resumed run, before any batch is drawn.
    resume: Callable[[int], None] = lambda itr: None
    img_size: int = 0
    channels: int = 0


def concatenate(batches: list[TaskBatch]) -> TaskBatch:
    """Stacks task batches along the task axis."""
    fields = []
    for values in zip(*batches):
        fields.append(None if values[0] is None else np.concatenate(values, axis=0))
    return TaskBatch(*fields)


def _sinusoid_sources(cfg) -> TaskSources:
    from data_generators.sinusoid import SinusoidTasks

    oracle = cfg.baseline == "oracle"
    if cfg.train:
        source = SinusoidTasks(cfg.update_batch_size, oracle=oracle,
                               rng=np.random.RandomState(cfg.seed))

        def resume(itr):
            # A resumed run continues with a fresh, still reproducible task stream.
            source.rng = np.random.RandomState([cfg.seed, itr])

        return TaskSources(source.dim_input, 1, resume=resume,
                           train=lambda: source.sample(cfg.meta_batch_size))
    source = SinusoidTasks(cfg.update_batch_size, oracle=oracle,
                           rng=np.random.RandomState(seed_for_test_mode(cfg)))
    # The original drew its 600 test tasks one at a time (meta-batch 1): do the same so the
    # random stream, and hence every task, is identical.
    return TaskSources(source.dim_input, 1,
                       test=lambda n: concatenate([source.sample(1) for _ in range(n)]))


def _require_folder(path: str, flag: str, command: str):
    if not os.path.isdir(path):
        raise DataError(f"--{flag}={path!r} is not a folder; create it with `{command}` "
                        f"(see README, 'Data')")


def _classification_sources(cfg) -> TaskSources:
    if cfg.datasource == "omniglot":
        _require_folder(cfg.omniglot_folder, "omniglot_folder",
                        "python -m data_generators.prepare_omniglot")
        from data_generators.omniglot import OmniglotTasks as Tasks
        folder = cfg.omniglot_folder
    else:
        _require_folder(cfg.miniimagenet_folder, "miniimagenet_folder",
                        "python -m data_generators.prepare_miniimagenet")
        from data_generators.miniimagenet import MiniImagenetTasks as Tasks
        folder = cfg.miniimagenet_folder
    seed = cfg.seed if cfg.train else seed_for_test_mode(cfg)
    source = Tasks(folder, cfg.num_classes, cfg.update_batch_size, train=cfg.train,
                   test_set=cfg.test_set, rng_seed=seed)
    height, width, channels = source.img_shape
    sources = TaskSources(source.dim_input, source.dim_output, img_size=height,
                          channels=channels)
    if cfg.train:
        # A resumed run continues the fixed 200,000-task list where it stopped.
        sources.resume = lambda itr: source.skip_train_tasks(itr * cfg.meta_batch_size)
        sources.train = lambda: source.train_batch(cfg.meta_batch_size)
        sources.val = lambda: source.eval_batch(cfg.meta_batch_size)
    else:
        # --test_seed also redraws the 600-task list (the original's: random.seed(6)).
        source.reset_eval(pool_seed=None if cfg.test_seed < 0 else cfg.test_seed)
        sources.test = source.eval_batch
    return sources


def build_task_sources(cfg) -> TaskSources:
    """Task sources for ``cfg`` (an ExperimentConfig); raises DataError for missing data."""
    if cfg.datasource == "sinusoid":
        return _sinusoid_sources(cfg)
    return _classification_sources(cfg)


def model_dimensions(cfg) -> TaskSources:
    """The input/output sizes the data would give, without reading any data (importing a
    TF1 checkpoint builds the model before any data exists)."""
    if cfg.datasource == "sinusoid":
        return TaskSources(dim_input=3 if cfg.baseline == "oracle" else 1, dim_output=1)
    if cfg.datasource == "omniglot":
        from data_generators.omniglot import IMG_SHAPE
    else:
        from data_generators.miniimagenet import IMG_SHAPE
    return TaskSources(dim_input=int(np.prod(IMG_SHAPE)), dim_output=cfg.num_classes,
                       img_size=IMG_SHAPE[0], channels=IMG_SHAPE[2])
