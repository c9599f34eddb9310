"""Decodes a class-per-folder image tree once into one uint8 array, cached on disk.

The original fed file names through a TF1 queue and decoded every image each time a task was
served. Here each split is decoded once into ``[classes, images_per_class, H, W, C]`` uint8
(MiniImagenet, all splits: about 1.3 GB) so task assembly is a numpy gather. The array is
saved next to the data (``<root>.cache-<fingerprint>.npy``) or in ``cache_dir``; the
fingerprint covers every file's path, size and modification time, so a re-prepared tree is
never served stale.

Decoders match the original's TF1 pipeline: PNGs (Omniglot) are lossless, so Pillow gives
exactly ``tf.image.decode_png``'s values; JPEGs (MiniImagenet) are decoded with
``tf.io.decode_jpeg`` because its default (fast integer DCT) differs from Pillow's accurate
DCT by up to 5/255 and the original used TensorFlow's default.
"""
from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import os
import warnings
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from data_generators.base import DataError
from data_generators.preparation import list_class_tree

CACHE_FORMAT = 1


class ClassImages(NamedTuple):
    """A decoded tree: ``images[c, i]`` is file ``file_names[c][i]`` of ``class_names[c]``.

    Example (two class folders of three 4x4 grey PNGs; the cache lands beside the tree):
        >>> import os, shutil, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> from data_generators.image_cache import load_class_images
        >>> tmp = tempfile.mkdtemp()
        >>> root = os.path.join(tmp, "tree")
        >>> for c in ("class_a", "class_b"):
        ...     os.makedirs(os.path.join(root, c))
        ...     for i in range(3):
        ...         pixels = np.full((4, 4), 10 * i, np.uint8)
        ...         Image.fromarray(pixels).save(os.path.join(root, c, f"{i}.png"))
        >>> tree = load_class_images(root, depth=1, extensions=(".png",),
        ...                          image_shape=(4, 4, 1), decoder="png_gray")
        >>> tree.class_names, tree.file_names[1]
        (['class_a', 'class_b'], ['0.png', '1.png', '2.png'])
        >>> tree.images.shape, tree.images.dtype, int(tree.images[1, 2, 0, 0, 0])
        ((2, 3, 4, 4, 1), dtype('uint8'), 20)
        >>> sorted(os.listdir(tmp))
        ['tree', 'tree.cache-...npy']
        >>> shutil.rmtree(tmp)
    """

    root: str
    class_names: List[str]  # relative folder paths, sorted
    file_names: List[List[str]]  # per class, sorted
    images: np.ndarray  # uint8 [classes, images_per_class, H, W, C]


def scan_class_tree(root: str, depth: int, extensions: Sequence[str]
                    ) -> Tuple[List[str], List[List[str]]]:
    """Sorted class folders (``depth`` levels below ``root``) and their sorted image files.

    Every class must hold the same number of images, since they share one array; the
    prepared data sets do (Omniglot 20, MiniImagenet 600).
    """
    if not os.path.isdir(root):
        raise DataError(f"image folder not found: {root}")
    listing = list_class_tree(root, depth)
    class_names = sorted(listing)
    file_names = [[name for name in listing[c] if name.lower().endswith(tuple(extensions))]
                  for c in class_names]
    if not class_names:
        raise DataError(f"{root}: no class folders {depth} level(s) deep")
    counts = {len(files) for files in file_names}
    if len(counts) != 1 or 0 in counts:
        smallest = min(range(len(class_names)), key=lambda c: len(file_names[c]))
        raise DataError(f"{root}: class folders hold different numbers of images "
                        f"({sorted(counts)}); e.g. {class_names[smallest]} has "
                        f"{len(file_names[smallest])}")
    return class_names, file_names


def tree_fingerprint(root: str, class_names, file_names, decoder: str) -> str:
    """Hash of every file's relative path, size and mtime, plus the decoder and format."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{decoder}".encode())
    for class_name, files in zip(class_names, file_names):
        for name in files:
            stat = os.stat(os.path.join(root, class_name, name))
            digest.update(f"{class_name}/{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path_for(root: str, cache_dir: Optional[str], fingerprint: str) -> str:
    """``<root>.cache-<fingerprint>.npy`` beside the data, or a root-specific name in
    ``cache_dir``. The fingerprint in the name makes a stale cache simply not found, and a
    plain ``.npy`` loads about 10x faster than an ``.npz``."""
    root = os.path.abspath(root)
    prefix = root if cache_dir is None else os.path.join(
        cache_dir, f"{os.path.basename(root)}-{hashlib.sha1(root.encode()).hexdigest()[:12]}")
    return f"{prefix}.cache-{fingerprint[:20]}.npy"


def _decode_png_gray(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))[:, :, None]


def _decode_jpeg_rgb(path: str) -> np.ndarray:
    import tensorflow as tf  # only needed when building a MiniImagenet cache

    with open(path, "rb") as handle:
        data = handle.read()
    return tf.io.decode_jpeg(data, channels=3).numpy()


DECODERS = {"png_gray": _decode_png_gray, "jpeg_rgb": _decode_jpeg_rgb}


def _decode_class(root, class_name, files, decoder, image_shape) -> np.ndarray:
    """Decodes one class folder into ``[images, H, W, C]``; failures name the file."""
    out = np.empty((len(files),) + tuple(image_shape), np.uint8)
    for index, name in enumerate(files):
        path = os.path.join(root, class_name, name)
        try:
            pixels = DECODERS[decoder](path)
        except Exception as error:  # Pillow and TF raise many exception types
            raise DataError(f"{path}: not a decodable image: {error}") from error
        if pixels.shape != tuple(image_shape):
            raise DataError(f"{path}: image shape {pixels.shape}, expected {tuple(image_shape)}")
        out[index] = pixels
    return out


def decode_tree(root, class_names, file_names, decoder, image_shape) -> np.ndarray:
    """All images as ``[classes, images, H, W, C]``, decoded by a few threads (decoders
    release the GIL)."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        arrays = pool.map(lambda c: _decode_class(root, class_names[c], file_names[c],
                                                  decoder, image_shape),
                          range(len(class_names)))
        return np.stack(list(arrays))


def _read_cache(path: str, expected_shape) -> Optional[np.ndarray]:
    """The cached array if it exists and has the expected shape, else None."""
    if not os.path.isfile(path):
        return None
    try:
        images = np.load(path, allow_pickle=False)
    except Exception as error:  # a truncated or foreign file: rebuild it
        warnings.warn(f"ignoring unreadable image cache {path}: {error}")
        return None
    return images if images.shape == tuple(expected_shape) else None


def _write_cache(path: str, images: np.ndarray) -> None:
    """Writes atomically (temp file + rename) and removes the same tree's stale caches; an
    unwritable location only warns."""
    temp_path = f"{path}.partial-{os.getpid()}.npy"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(temp_path, images)
        os.replace(temp_path, path)
    except OSError as error:
        warnings.warn(f"could not write image cache {path} ({error}); decoding again next time")
        if os.path.exists(temp_path):
            os.remove(temp_path)
        return
    for stale in glob.glob(glob.escape(path.rsplit(".cache-", 1)[0]) + ".cache-*.npy"):
        if stale != path:
            os.remove(stale)


def load_class_images(root: str, depth: int, extensions: Sequence[str],
                      image_shape: Tuple[int, int, int], decoder: str,
                      cache_dir: Optional[str] = None) -> ClassImages:
    """Decoded images of a class tree, from the cache when it is still valid."""
    class_names, file_names = scan_class_tree(root, depth, extensions)
    fingerprint = tree_fingerprint(root, class_names, file_names, decoder)
    expected_shape = (len(class_names), len(file_names[0])) + tuple(image_shape)
    path = cache_path_for(root, cache_dir, fingerprint)
    images = _read_cache(path, expected_shape)
    if images is None:
        images = decode_tree(root, class_names, file_names, decoder, image_shape)
        _write_cache(path, images)
    return ClassImages(root, class_names, file_names, images)
