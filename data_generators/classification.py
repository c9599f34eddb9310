"""N-way K-shot task batches served from a fixed task pool, as the original's data tensor.

Shared by :mod:`data_generators.omniglot` and :mod:`data_generators.miniimagenet`, which only
say where a split's images come from and how many query samples a task has.

What the original does per served task (``make_data_tensor``), reproduced here in numpy:

* the pool (see :mod:`data_generators.task_pool`) fixes the N classes, their labels (position
  in the shuffled class list) and the samples of each class; pools are cycled through in order;
* rows are laid out sample-major: for each sample index s, the N classes in a freshly shuffled
  order (``tf.random_shuffle`` per s, so redrawn on every pass); support ``inputa`` is the
  first N*K rows (s < K), query ``inputb`` the rest;
* Omniglot only: each class of the task is rotated by a uniformly drawn multiple of 90 degrees
  (``tf.image.rot90``, counter-clockwise like ``np.rot90``), redrawn every time;
* pixels become float32 as the original's ops: ``x / 255`` (then ``1 - x`` for Omniglot).

The per-pass randomness (class orders, rotations) comes from a seeded numpy Generator, so
batches are deterministic for a given ``rng_seed``. Batch assembly is one fancy-index gather
from the uint8 split array (pre-rotated copies for Omniglot) and one float conversion.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

from data_generators.base import DataError, TaskBatch
from data_generators.task_pool import TaskPool, draw_task_pool

TRAIN_POOL_SEED = 5  # main.py: random.seed(5) before the training data tensor
EVAL_POOL_SEED = 6  # main.py: random.seed(6) before the validation/test data tensor
TRAIN_POOL_SIZE = 200000  # make_data_tensor's num_total_batches (tasks, not iterations)
EVAL_POOL_SIZE = 600


class SplitSource(NamedTuple):
    """One meta-split: its size (known up front from a folder listing) and a lazy loader.

    ``load()`` returns uint8 ``[num_classes, images_per_class, H, W, C]`` in the split's class
    order (the order the pool's class indices refer to).

    Example:
        >>> import numpy as np
        >>> from data_generators.classification import SplitSource
        >>> split = SplitSource("toy split", num_classes=3, images_per_class=4,
        ...                     load=lambda: np.zeros((3, 4, 2, 2, 1), np.uint8))
        >>> split.num_classes, split.images_per_class, split.load().shape
        (3, 4, (3, 4, 2, 2, 1))
    """

    description: str  # names the split and folder in error messages
    num_classes: int
    images_per_class: int
    load: Callable[[], np.ndarray]


def pixels_to_float(pixels: np.ndarray, invert: bool) -> np.ndarray:
    """float32 pixels by the original's ops: ``cast / 255.0``, then ``1.0 - x`` if inverted.

    Both steps are single float32 operations, so the values are bit-identical to TF's.
    """
    values = np.divide(pixels, np.float32(255.0), dtype=np.float32)
    if invert:
        np.subtract(np.float32(1.0), values, out=values)
    return values


def check_split_fits(split: SplitSource, num_classes: int, update_batch_size: int,
                     samples_per_class: int) -> None:
    """Fails early, naming the flag, when tasks of this shape cannot be drawn from ``split``."""
    if num_classes < 1 or update_batch_size < 1:
        raise DataError(f"num_classes ({num_classes}) and update_batch_size "
                        f"({update_batch_size}) must be positive")
    if num_classes > split.num_classes:
        raise DataError(f"num_classes={num_classes} but the {split.description} has only "
                        f"{split.num_classes} classes")
    if samples_per_class > split.images_per_class:
        raise DataError(f"update_batch_size={update_batch_size} needs {samples_per_class} "
                        f"images per class (support + query) but the {split.description} has "
                        f"only {split.images_per_class}")


class _PoolCursor:
    """A lazily drawn task pool and the position of the next task to serve (cycling)."""

    def __init__(self, split: SplitSource, num_classes, samples_per_class, size, seed):
        self.split, self.num_classes = split, num_classes
        self.samples_per_class, self.size, self.seed = samples_per_class, size, seed
        self.pool: Optional[TaskPool] = None
        self.images: Optional[np.ndarray] = None
        self.position = 0

    def next_tasks(self, count: int) -> np.ndarray:
        """Indices of the next ``count`` pool tasks; wraps around like the original's queue."""
        if self.pool is None:
            self.pool = draw_task_pool(self.split.num_classes, self.split.images_per_class,
                                       self.num_classes, self.samples_per_class, self.size,
                                       self.seed)
        indices = (self.position + np.arange(count)) % self.size
        self.position = int((self.position + count) % self.size)
        return indices


class ClassificationTasks:
    """Serves :class:`TaskBatch` es of N-way tasks from a training and an evaluation split.

    Subclasses pass the splits and sample counts; the public methods are the engine's API.

    Example (3-way 1-shot, 1 query per class, toy 2x2 grey images, small pools):
        >>> import numpy as np
        >>> from data_generators.classification import ClassificationTasks, SplitSource
        >>> pixels = np.random.default_rng(0).integers(0, 256, (4, 2, 2, 2, 1), np.uint8)
        >>> split = SplitSource("toy split", 4, 2, lambda: pixels)  # 4 classes, 2 images each
        >>> tasks = ClassificationTasks(split, split, num_classes=3, update_batch_size=1,
        ...                             train_queries=1, eval_queries=1, img_shape=(2, 2, 1),
        ...                             rotate=False, invert=False, rng_seed=0,
        ...                             train_pool_size=10, eval_pool_size=5)
        >>> batch = tasks.train_batch(meta_batch_size=2)
        >>> [part.shape for part in batch[:4]]  # inputa, labela, inputb, labelb
        [(2, 3, 4), (2, 3, 3), (2, 3, 4), (2, 3, 3)]
        >>> batch.labela[0].sum(axis=0).tolist()  # one support row per label (one-hot)
        [1.0, 1.0, 1.0]
        >>> bool(batch.inputa.min() >= 0.0 and batch.inputa.max() <= 1.0), batch.inputa.dtype
        (True, dtype('float32'))
    """

    def __init__(self, train_split: SplitSource, eval_split: SplitSource, *, num_classes: int,
                 update_batch_size: int, train_queries: int, eval_queries: int,
                 img_shape, rotate: bool, invert: bool, rng_seed: int,
                 train_pool_size: int = TRAIN_POOL_SIZE, eval_pool_size: int = EVAL_POOL_SIZE):
        self.num_classes = self.dim_output = int(num_classes)
        self.update_batch_size = int(update_batch_size)
        self.img_shape = tuple(img_shape)
        self.dim_input = int(np.prod(self.img_shape))
        self.train_samples_per_class = self.update_batch_size + train_queries
        self.eval_samples_per_class = self.update_batch_size + eval_queries
        check_split_fits(train_split, num_classes, update_batch_size,
                         self.train_samples_per_class)
        check_split_fits(eval_split, num_classes, update_batch_size,
                         self.eval_samples_per_class)
        self._rotate = rotate
        self._invert = invert
        self._rng = np.random.default_rng(rng_seed)
        self._train = _PoolCursor(train_split, num_classes, self.train_samples_per_class,
                                  train_pool_size, TRAIN_POOL_SEED)
        self._eval = _PoolCursor(eval_split, num_classes, self.eval_samples_per_class,
                                 eval_pool_size, EVAL_POOL_SEED)

    def train_batch(self, meta_batch_size: int) -> TaskBatch:
        """The next ``meta_batch_size`` tasks of the 200,000-task training pool."""
        return self._batch(self._train, meta_batch_size)

    def eval_batch(self, meta_batch_size: int) -> TaskBatch:
        """The next tasks of the 600-task validation (or test, with ``test_set``) pool."""
        return self._batch(self._eval, meta_batch_size)

    def skip_train_tasks(self, count: int) -> None:
        """Advances the training pool by ``count`` tasks without serving them (resuming a run
        where it stopped; the original's queue restarted from task 0 instead)."""
        self._train.position = int((self._train.position + count) % self._train.size)

    def reset_eval(self, pool_seed: Optional[int] = None) -> None:
        """Restarts the evaluation pool at task 0 (test mode evaluates tasks 0..599 in order).

        ``pool_seed`` (``--test_seed``) draws the pool after ``random.seed(pool_seed)``
        instead of the original's ``EVAL_POOL_SEED``: another set of 600 tasks.
        """
        if pool_seed is not None and pool_seed != self._eval.seed:
            self._eval.seed, self._eval.pool = pool_seed, None  # redrawn on first use
        self._eval.position = 0

    def _split_images(self, cursor: _PoolCursor) -> np.ndarray:
        """The split's uint8 images, loaded on first use; ``[4, ...]`` rotated copies for
        Omniglot so a rotation is just one more gather index."""
        if cursor.images is None:
            images = cursor.split.load()
            if self._rotate:
                images = np.stack([np.rot90(images, r, axes=(2, 3)) for r in range(4)])
            cursor.images = images
        return cursor.images

    def _batch(self, cursor: _PoolCursor, meta_batch_size: int) -> TaskBatch:
        if meta_batch_size < 1:
            raise DataError(f"meta_batch_size must be positive, got {meta_batch_size}")
        images = self._split_images(cursor)
        tasks = cursor.next_tasks(meta_batch_size)
        classes, samples = cursor.pool.classes[tasks], cursor.pool.samples[tasks]
        n, s = self.num_classes, cursor.samples_per_class
        # order[b, k, j]: label of the class shown j-th among the rows of sample k.
        order = self._rng.permuted(np.tile(np.arange(n), (meta_batch_size, s, 1)), axis=-1)
        batch_index = np.arange(meta_batch_size)[:, None, None]
        class_index = classes[batch_index, order]
        sample_index = samples[batch_index, order, np.arange(s)[None, :, None]]
        if self._rotate:
            rotations = self._rng.integers(0, 4, size=(meta_batch_size, n))
            pixels = images[rotations[batch_index, order], class_index, sample_index]
        else:
            pixels = images[class_index, sample_index]
        labels = np.eye(n, dtype=np.float32)[order]
        k = self.update_batch_size

        def rows(part):  # [tasks, samples, N, ...] -> [tasks, samples * N, features]
            return part.reshape(meta_batch_size, -1, int(np.prod(part.shape[3:])))

        support, query = pixels[:, :k], pixels[:, k:]
        return TaskBatch(rows(pixels_to_float(support, self._invert)), rows(labels[:, :k]),
                         rows(pixels_to_float(query, self._invert)), rows(labels[:, k:]))


def missing_folder_error(what: str, folder: str, command: str,
                         output_dir: Optional[str] = None) -> DataError:
    """The error for an unprepared data folder, saying which command creates it."""
    output_dir = folder if output_dir is None else output_dir
    return DataError(f"{what} folder not found: {folder}; create it with "
                     f"`python -m {command} --output_dir={output_dir}`")
