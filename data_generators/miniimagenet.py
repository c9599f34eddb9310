"""MiniImagenet N-way K-shot tasks, as the original's ``DataGenerator`` with miniimagenet.

Reads the tree made by :mod:`data_generators.prepare_miniimagenet`
(``<folder>/{train,val,test}/<wnid>/*.jpg``, 84x84 RGB): meta-training on ``train``,
evaluation on ``val`` or, with ``test_set``, ``test``. The original lists class folders with
``os.listdir`` (file-system order); they are sorted here.

Samples per class follow the original's ``main.py``: K + 15 (15 queries) whenever it runs with
``--train=True`` (training tasks and the validation tasks checked during training), K + K in
test mode (``--train=False``). No augmentation.
"""
from __future__ import annotations

import functools
import os
from typing import List, Optional, Tuple

from data_generators.classification import (
    EVAL_POOL_SIZE, TRAIN_POOL_SIZE, ClassificationTasks, SplitSource, missing_folder_error)
from data_generators.image_cache import load_class_images, scan_class_tree

IMG_SHAPE = (84, 84, 3)
TRAINING_QUERIES = 15  # main.py: DataGenerator(update_batch_size + 15, ...) when training
PREPARE_COMMAND = "data_generators.prepare_miniimagenet --csv_dir=CSV_DIR --zip_dir=ZIP_DIR"


def _split_source(root: str, description: str, cache_dir: Optional[str]
                  ) -> Tuple[SplitSource, List[str]]:
    """A split (size from a listing, pixels decoded/cached on first use) and its folders."""
    class_names, file_names = scan_class_tree(root, 1, (".jpg", ".jpeg"))
    load = functools.lru_cache(maxsize=1)(
        lambda: load_class_images(root, 1, (".jpg", ".jpeg"), IMG_SHAPE, "jpeg_rgb",
                                  cache_dir).images)
    split = SplitSource(f"MiniImagenet {description} split ({root})", len(class_names),
                        len(file_names[0]), load)
    return split, [os.path.join(root, name) for name in class_names]


class MiniImagenetTasks(ClassificationTasks):
    """Task batches for ``--datasource=miniimagenet``.

    ``folder``: the prepared tree (holding ``train``, ``val``, ``test``). ``train``: whether
    the engine trains (K + 15 samples per class in every pool) or only tests (K + K in the
    evaluation pool). ``test_set``: evaluate on ``test`` instead of ``val``. ``rng_seed``
    seeds the per-serve class orders. ``cache_dir``: where decoded-image caches go (default
    ``<folder>/<split>.cache-<fingerprint>.npy``). Pool sizes are adjustable for tests only.

    Example (a fake prepared tree: 2 classes of 16 JPEGs in ``train`` and ``val``, enough
    for 2-way 1-shot tasks with the original's 15 training queries per class):
        >>> import os, shutil, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> from data_generators.miniimagenet import MiniImagenetTasks
        >>> folder = tempfile.mkdtemp()
        >>> rng = np.random.default_rng(0)
        >>> for wnid in ("train/n01", "train/n02", "val/n03", "val/n04"):
        ...     os.makedirs(os.path.join(folder, wnid))
        ...     for i in range(16):
        ...         pixels = rng.integers(0, 256, (84, 84, 3), np.uint8)
        ...         Image.fromarray(pixels).save(os.path.join(folder, wnid, f"{i:02d}.jpg"))
        >>> tasks = MiniImagenetTasks(folder, num_classes=2, update_batch_size=1,
        ...                           train_pool_size=10, eval_pool_size=10)
        >>> batch = tasks.train_batch(meta_batch_size=2)
        >>> [part.shape for part in batch[:4]]  # inputa, labela, inputb, labelb
        [(2, 2, 21168), (2, 2, 2), (2, 30, 21168), (2, 30, 2)]
        >>> shutil.rmtree(folder)
    """

    def __init__(self, folder: str, num_classes: int, update_batch_size: int,
                 train: bool = True, test_set: bool = False, rng_seed: int = 0, *,
                 cache_dir: Optional[str] = None,
                 train_pool_size: int = TRAIN_POOL_SIZE, eval_pool_size: int = EVAL_POOL_SIZE):
        if not os.path.isdir(folder):
            raise missing_folder_error("MiniImagenet", folder, PREPARE_COMMAND)
        eval_name = "test" if test_set else "val"
        for split in ("train", eval_name):  # report a missing split before scanning any
            if not os.path.isdir(os.path.join(folder, split)):
                raise missing_folder_error(f"MiniImagenet {split}", os.path.join(folder, split),
                                           PREPARE_COMMAND, output_dir=folder)
        train_split, self.metatrain_folders = _split_source(
            os.path.join(folder, "train"), "meta-train", cache_dir)
        eval_split, self.metaval_folders = _split_source(
            os.path.join(folder, eval_name), "meta-test" if test_set else "meta-validation",
            cache_dir)
        super().__init__(
            train_split, eval_split, num_classes=num_classes,
            update_batch_size=update_batch_size, train_queries=TRAINING_QUERIES,
            eval_queries=TRAINING_QUERIES if train else update_batch_size,
            img_shape=IMG_SHAPE, rotate=False, invert=False, rng_seed=rng_seed,
            train_pool_size=train_pool_size, eval_pool_size=eval_pool_size)
