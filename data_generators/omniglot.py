"""Omniglot N-way K-shot tasks, as the original's ``DataGenerator`` with datasource omniglot.

Reads the tree made by :mod:`data_generators.prepare_omniglot`
(``<folder>/<alphabet>/<character>/*.png``, 28x28). The split follows the original: the
1623 character folders, shuffled with ``random.seed(1)``, give 1100 meta-train, 100
meta-validation and 423 meta-test characters (``config['num_train'] = 1200`` minus
``num_val = 100``). The original shuffles ``os.listdir`` order, which depends on the file
system; the folders are sorted first so the split is the same everywhere.

Each task has K + K images per class (support and query), and every class is rotated by a
random multiple of 90 degrees whenever its task is served (training and test).
"""
from __future__ import annotations

import functools
import os
import random
from typing import List, Optional, Sequence, Tuple

import numpy as np

from data_generators.classification import (
    EVAL_POOL_SIZE, TRAIN_POOL_SIZE, ClassificationTasks, SplitSource, missing_folder_error)
from data_generators.image_cache import load_class_images, scan_class_tree

IMG_SHAPE = (28, 28, 1)
SPLIT_SEED = 1  # the original's random.seed(1) before shuffling the character folders
NUM_TRAIN_CLASSES = 1100
NUM_VAL_CLASSES = 100
PREPARE_COMMAND = ("data_generators.prepare_omniglot --background_zip=images_background.zip "
                   "--evaluation_zip=images_evaluation.zip")


def split_character_folders(folders: Sequence[str], num_train: int = NUM_TRAIN_CLASSES,
                            num_val: int = NUM_VAL_CLASSES
                            ) -> Tuple[List[str], List[str], List[str]]:
    """(meta-train, meta-val, meta-test) folders: sorted, shuffled with seed 1, then cut."""
    shuffled = sorted(folders)
    random.Random(SPLIT_SEED).shuffle(shuffled)
    return (shuffled[:num_train], shuffled[num_train:num_train + num_val],
            shuffled[num_train + num_val:])


class OmniglotTasks(ClassificationTasks):
    """Task batches for ``--datasource=omniglot``.

    ``folder``: the prepared tree. ``train``: kept for the engine's symmetry with
    MiniImagenet (Omniglot tasks have K + K samples either way). ``test_set``: evaluate on the
    423 meta-test characters instead of the 100 meta-validation ones. ``rng_seed`` seeds the
    per-serve class orders and rotations. ``cache_dir``: where the decoded-image cache goes
    (default ``<folder>.cache-<fingerprint>.npy``). The remaining keywords shrink the split and pools for
    tests; their defaults are the original's.

    Example (a fake prepared tree: 2 alphabets x 3 characters x 2 PNGs; 3-way 1-shot tasks
    from a 3-character meta-train and a 3-character meta-validation split):
        >>> import os, shutil, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> from data_generators.omniglot import OmniglotTasks
        >>> tmp = tempfile.mkdtemp()
        >>> folder = os.path.join(tmp, "omniglot_resized")
        >>> rng = np.random.default_rng(0)
        >>> for character in ("Latin/c1", "Latin/c2", "Latin/c3", "Greek/c1", "Greek/c2",
        ...                   "Greek/c3"):
        ...     os.makedirs(os.path.join(folder, character))
        ...     for i in range(2):
        ...         pixels = rng.integers(0, 2, (28, 28), np.uint8) * 255
        ...         Image.fromarray(pixels).save(os.path.join(folder, character, f"{i}.png"))
        >>> tasks = OmniglotTasks(folder, num_classes=3, update_batch_size=1,
        ...                       num_train_classes=3, num_val_classes=3,
        ...                       train_pool_size=10, eval_pool_size=10)
        >>> batch = tasks.train_batch(meta_batch_size=2)
        >>> [part.shape for part in batch[:4]]  # inputa, labela, inputb, labelb
        [(2, 3, 784), (2, 3, 3), (2, 3, 784), (2, 3, 3)]
        >>> tasks.eval_batch(meta_batch_size=2).inputb.shape
        (2, 3, 784)
        >>> shutil.rmtree(tmp)
    """

    def __init__(self, folder: str, num_classes: int, update_batch_size: int,
                 train: bool = True, test_set: bool = False, rng_seed: int = 0, *,
                 cache_dir: Optional[str] = None, num_train_classes: int = NUM_TRAIN_CLASSES,
                 num_val_classes: int = NUM_VAL_CLASSES,
                 train_pool_size: int = TRAIN_POOL_SIZE, eval_pool_size: int = EVAL_POOL_SIZE):
        if not os.path.isdir(folder):
            raise missing_folder_error("Omniglot", folder, PREPARE_COMMAND)
        class_names, file_names = scan_class_tree(folder, 2, (".png",))
        train_names, val_names, test_names = split_character_folders(
            class_names, num_train_classes, num_val_classes)
        eval_names = test_names if test_set else val_names
        self.metatrain_folders = [os.path.join(folder, name) for name in train_names]
        self.metaval_folders = [os.path.join(folder, name) for name in eval_names]

        @functools.lru_cache(maxsize=1)
        def all_images() -> np.ndarray:  # one decode / cache file for the whole tree
            return load_class_images(folder, 2, (".png",), IMG_SHAPE, "png_gray",
                                     cache_dir).images

        position = {name: index for index, name in enumerate(class_names)}

        def split(description: str, names: List[str]) -> SplitSource:
            indices = np.array([position[name] for name in names], dtype=np.int64)
            return SplitSource(f"Omniglot {description} split of {folder}", len(names),
                               len(file_names[0]), lambda: all_images()[indices])

        super().__init__(
            split("meta-train", train_names),
            split("meta-test" if test_set else "meta-validation", eval_names),
            num_classes=num_classes, update_batch_size=update_batch_size,
            train_queries=update_batch_size, eval_queries=update_batch_size,
            img_shape=IMG_SHAPE, rotate=True, invert=True, rng_seed=rng_seed,
            train_pool_size=train_pool_size, eval_pool_size=eval_pool_size)
