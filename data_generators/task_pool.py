"""The original's fixed task lists, drawn with Python's ``random`` stream, but fast.

``make_data_tensor`` in the original draws its whole task list up front, after
``random.seed(5)`` (200,000 training tasks) or ``random.seed(6)`` (600 validation/test
tasks)::

    for _ in range(num_tasks):
        classes = random.sample(folders, num_classes)
        random.shuffle(classes)                        # label = position in this list
        for folder in classes:
            random.sample(os.listdir(folder), samples_per_class)

Reproducing that list task for task means consuming the Mersenne Twister stream exactly as
``random.sample`` and ``random.shuffle`` do. Calling them 200,000 x (N + 2) times takes
5-17 s, so :func:`_draw_inlined` re-implements their index arithmetic (CPython's
``_randbelow``: draw ``n.bit_length()`` bits, reject values >= n; ``sample`` uses a
swap-remove pool for small populations and a rejection set for large ones) with a single
``getrandbits`` bound method, 3-4x faster. Because that copies CPython internals,
:func:`draw_task_pool` first checks it against the library functions on a few hundred tasks of
the same shape and falls back to them if a future Python draws differently.

Indices replace names: ``sample(range(n), k)`` returns the same positions as sampling a list
of n names, so the pool stores class indices into the (sorted) folder list and image indices
into each folder's (sorted) file list.
"""
from __future__ import annotations

import math
import random
from typing import NamedTuple

import numpy as np


class TaskPool(NamedTuple):
    """``classes[t, j]``: folder of label j in task t; ``samples[t, j, s]``: its s-th image.

    Example (3 tasks, 5-way, 2 samples per class, from 10 folders of 20 images):
        >>> import random
        >>> from data_generators.task_pool import draw_task_pool
        >>> pool = draw_task_pool(num_folders=10, images_per_folder=20, num_classes=5,
        ...                       samples_per_class=2, num_tasks=3, seed=5)
        >>> pool.classes.shape, pool.samples.shape, pool.classes.dtype
        ((3, 5), (3, 5, 2), dtype('int32'))
        >>> rng = random.Random(5)  # the original's first task, drawn the slow way
        >>> chosen = rng.sample(range(10), 5)
        >>> rng.shuffle(chosen)
        >>> pool.classes[0].tolist() == chosen
        True
    """

    classes: np.ndarray  # int32 [tasks, num_classes]
    samples: np.ndarray  # int32 [tasks, num_classes, samples_per_class]


def _uses_set_method(population: int, k: int) -> bool:
    """CPython's ``random.sample`` switch between its two algorithms."""
    setsize = 21
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    return population > setsize


def _draw_with_library(rng: random.Random, num_folders, images_per_folder, num_classes,
                       samples_per_class, num_tasks) -> TaskPool:
    """The original's loop, calling ``random.sample``/``random.shuffle`` themselves."""
    classes = np.empty((num_tasks, num_classes), np.int32)
    samples = np.empty((num_tasks, num_classes, samples_per_class), np.int32)
    folders, images = range(num_folders), range(images_per_folder)
    for task in range(num_tasks):
        chosen = rng.sample(folders, num_classes)
        rng.shuffle(chosen)
        classes[task] = chosen
        samples[task] = [rng.sample(images, samples_per_class) for _ in chosen]
    return TaskPool(classes, samples)


def _make_sampler(getrandbits, population: int, k: int):
    """A function equal to ``rng.sample(range(population), k)`` on the same stream."""
    bits = population.bit_length()
    if _uses_set_method(population, k):
        def sample():
            selected, result = set(), []
            for _ in range(k):
                j = getrandbits(bits)
                while j >= population or j in selected:
                    j = getrandbits(bits)
                selected.add(j)
                result.append(j)
            return result
        return sample

    pool_bits = [(population - i).bit_length() for i in range(k)]

    def sample():
        pool, result = list(range(population)), []
        for i in range(k):
            n, width = population - i, pool_bits[i]
            j = getrandbits(width)
            while j >= n:
                j = getrandbits(width)
            result.append(pool[j])
            pool[j] = pool[n - 1]
        return result
    return sample


def _draw_inlined(rng: random.Random, num_folders, images_per_folder, num_classes,
                  samples_per_class, num_tasks) -> TaskPool:
    """Same stream as :func:`_draw_with_library`, without the library's per-call overhead."""
    getrandbits = rng.getrandbits
    sample_classes = _make_sampler(getrandbits, num_folders, num_classes)
    sample_images = _make_sampler(getrandbits, images_per_folder, samples_per_class)
    shuffle_bits = [(i + 1).bit_length() for i in range(num_classes)]
    classes = np.empty((num_tasks, num_classes), np.int32)
    samples = np.empty((num_tasks, num_classes, samples_per_class), np.int32)
    for task in range(num_tasks):
        chosen = sample_classes()
        for i in range(num_classes - 1, 0, -1):  # random.shuffle
            j = getrandbits(shuffle_bits[i])
            while j > i:
                j = getrandbits(shuffle_bits[i])
            chosen[i], chosen[j] = chosen[j], chosen[i]
        classes[task] = chosen
        samples[task] = [sample_images() for _ in range(num_classes)]
    return TaskPool(classes, samples)


def _inlined_matches_library(*shape) -> bool:
    """Whether the fast path reproduces this Python's ``random`` for tasks of this shape."""
    probe = (*shape, 300)
    fast = _draw_inlined(random.Random(12345), *probe)
    slow = _draw_with_library(random.Random(12345), *probe)
    return bool(np.array_equal(fast.classes, slow.classes)
                and np.array_equal(fast.samples, slow.samples))


def draw_task_pool(num_folders: int, images_per_folder: int, num_classes: int,
                   samples_per_class: int, num_tasks: int, seed: int) -> TaskPool:
    """The original's task list for ``random.seed(seed)``, on a private ``random.Random``.

    Callers validate ``num_classes <= num_folders`` and
    ``samples_per_class <= images_per_folder`` first (with messages naming the flags).
    """
    shape = (num_folders, images_per_folder, num_classes, samples_per_class)
    draw = _draw_inlined if _inlined_matches_library(*shape) else _draw_with_library
    return draw(random.Random(seed), *shape, num_tasks)
