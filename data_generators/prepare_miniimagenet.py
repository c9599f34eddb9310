"""Builds the original's ``./data/miniImagenet/{train,val,test}/<wnid>/*.jpg`` tree.

Usage (one of the two image sources)::

    python -m data_generators.prepare_miniimagenet --csv_dir=PATH \\
        --zip_dir=PATH --output_dir=./data/miniImagenet        # split zips, already 84x84
    python -m data_generators.prepare_miniimagenet --csv_dir=PATH \\
        --images_dir=PATH --output_dir=./data/miniImagenet     # full-resolution images

``--csv_dir`` holds Ravi & Larochelle's ``train.csv``, ``val.csv``, ``test.csv`` (header
``filename,label``). ``--images_dir`` is the original ``proc_images.py`` route: a folder of
full-resolution images named as in the CSVs (flat, or in ``<wnid>/`` subfolders), each
resized with ``resize((84, 84), resample=LANCZOS)`` and saved as JPEG at Pillow's default
quality, as that script does. ``--zip_dir`` holds ``train.zip``, ``val.zip``, ``test.zip``
whose members are ``<split>/<wnid>/<file>.jpg`` already at 84x84: their bytes are copied
unchanged (re-encoding would lose quality), after checking each decodes at 84x84.

Either way the tree must have 64/16/20 classes of 600 images whose names match the CSVs one
to one, and is written atomically with a ``.prepared.json`` marker (see
:mod:`data_generators.preparation`).
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import sys
from typing import Dict, Optional, Tuple

import PIL
from PIL import Image

from data_generators import preparation
from data_generators.base import DataError

SPLITS = ("train", "val", "test")
IMAGE_SIZE = (84, 84)
# split -> (classes, images per class) of the Ravi & Larochelle split.
EXPECTED_COUNTS = {"train": (64, 600), "val": (16, 600), "test": (20, 600)}


def read_split_csv(path: str, expected: Optional[Tuple[int, int]]) -> Dict[str, list]:
    """``{wnid: [file names in CSV order]}`` of one split file, with its counts checked."""
    preparation.require_file(path, "csv_dir")
    classes = collections.OrderedDict()
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
        raise DataError(f"{path}: expected the header 'filename,label'")
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0] or not row[1]:
            raise DataError(f"{path}:{line_number}: expected 'filename,label', got {row}")
        classes.setdefault(row[1], []).append(row[0])
    sizes = {len(files) for files in classes.values()}
    found = (len(classes), min(sizes) if sizes else 0)
    if expected is not None and (found != tuple(expected) or len(sizes) != 1):
        raise DataError(f"{path}: {len(classes)} classes with {sorted(sizes)} images each; "
                        f"expected {expected[0]} classes of {expected[1]}")
    return classes


def read_all_csvs(csv_dir: str, expected: Optional[dict]) -> Dict[str, Dict[str, list]]:
    if not csv_dir or not os.path.isdir(csv_dir):
        raise DataError(f"--csv_dir: folder not found: {csv_dir}")
    splits = {split: read_split_csv(os.path.join(csv_dir, f"{split}.csv"),
                                    None if expected is None else expected[split])
              for split in SPLITS}
    seen = {}
    for split, classes in splits.items():
        for files in classes.values():
            for name in files:
                if name in seen:
                    raise DataError(f"--csv_dir: {name} is listed in both {seen[name]}.csv "
                                    f"and {split}.csv")
                seen[name] = split
    return splits


def _describe_mismatch(wanted: set, found: set, where: str) -> None:
    """Raises a DataError listing (a few of) the files missing from / extra in ``where``."""
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    if missing:
        raise DataError(f"{where}: {len(missing)} image(s) of the CSV are missing, e.g. "
                        f"{', '.join(missing[:3])}")
    if extra:
        raise DataError(f"{where}: {len(extra)} image(s) not in the CSV, e.g. "
                        f"{', '.join(extra[:3])}")


def _checked_image(data: bytes, where: str, want_size) -> Image.Image:
    image = preparation.decode_image(data, where)
    if want_size is not None and image.size != want_size:
        raise DataError(f"{where}: image is {image.size[0]}x{image.size[1]}, expected "
                        f"{want_size[0]}x{want_size[1]} (use --images_dir for full-size images)")
    return image


def _copy_split_zip(zip_path: str, split: str, classes: dict, target: str) -> None:
    """Copies one split zip's JPEG bytes unchanged, after checking names and decodability."""
    archive = preparation.open_zip(zip_path, "zip_dir")
    members = {}
    for name in archive.namelist():
        parts = name.split("/")
        if name.endswith("/") or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if len(parts) != 3 or parts[0] != split:
            raise DataError(f"{zip_path}: unexpected member {name} "
                            f"(want {split}/<wnid>/<file>.jpg)")
        members[f"{parts[1]}/{parts[2]}"] = name
    wanted = {f"{wnid}/{name}" for wnid, files in classes.items() for name in files}
    _describe_mismatch(wanted, set(members), zip_path)
    for wnid in classes:
        os.makedirs(os.path.join(target, wnid))

    def copy(relative: str) -> None:
        where = f"{zip_path}:{members[relative]}"
        data = preparation.read_zip_member(archive, members[relative], zip_path)
        _checked_image(data, where, IMAGE_SIZE)
        with open(os.path.join(target, relative), "wb") as handle:
            handle.write(data)

    preparation.run_in_threads(copy, sorted(wanted))


def _find_source_image(images_dir: str, wnid: str, name: str) -> str:
    for path in (os.path.join(images_dir, name), os.path.join(images_dir, wnid, name)):
        if os.path.isfile(path):
            return path
    raise DataError(f"--images_dir: {name} (class {wnid}) not found in {images_dir} "
                    f"or {os.path.join(images_dir, wnid)}")


def _resize_split_images(images_dir: str, classes: dict, target: str) -> None:
    """The ``proc_images.py`` route: LANCZOS to 84x84, JPEG at Pillow's default quality.

    Non-RGB sources (ImageNet has a few greyscale and CMYK JPEGs) are converted to RGB first;
    the original would save them in their own mode and its 3-channel decode would then fail.
    """
    for wnid in classes:
        os.makedirs(os.path.join(target, wnid))

    def resize(item) -> None:
        wnid, name = item
        source = _find_source_image(images_dir, wnid, name)
        with open(source, "rb") as handle:
            image = _checked_image(handle.read(), source, None)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image.resize(IMAGE_SIZE, resample=Image.LANCZOS).save(
            os.path.join(target, wnid, name), format="JPEG")

    preparation.run_in_threads(resize, [(w, n) for w, files in classes.items() for n in files])


def verify_tree(folder: str, splits: Dict[str, Dict[str, list]]) -> dict:
    """Checks that ``folder/<split>/<wnid>/`` holds exactly the CSV's files; returns counts."""
    counts = {}
    for split, classes in splits.items():
        split_folder = os.path.join(folder, split)
        if not os.path.isdir(split_folder):
            raise DataError(f"{split_folder}: missing split folder")
        listing = preparation.list_class_tree(split_folder, depth=1)
        found = {f"{wnid}/{name}" for wnid, names in listing.items() for name in names}
        wanted = {f"{wnid}/{name}" for wnid, names in classes.items() for name in names}
        _describe_mismatch(wanted, found, split_folder)
        if set(listing) != set(classes):
            raise DataError(f"{split_folder}: class folders differ from {split}.csv "
                            f"(extra: {sorted(set(listing) - set(classes))[:3]})")
        counts[split] = [len(listing), min((len(n) for n in listing.values()), default=0)]
    return counts


def prepare_miniimagenet(csv_dir: str, output_dir: str, zip_dir: Optional[str] = None,
                         images_dir: Optional[str] = None, overwrite: bool = False,
                         expected: Optional[dict] = EXPECTED_COUNTS, log=print) -> dict:
    """Prepares (or verifies and skips) ``output_dir``; returns ``{split: [classes, images]}``."""
    if (zip_dir is None) == (images_dir is None):
        raise DataError("pass exactly one of --zip_dir and --images_dir")
    splits = read_all_csvs(csv_dir, expected)
    settings = {"dataset": "miniimagenet",
                **{f"{split}_csv_sha256": preparation.sha256_of_file(
                    os.path.join(csv_dir, f"{split}.csv")) for split in SPLITS}}
    if zip_dir is not None:
        zips = {split: preparation.require_file(os.path.join(zip_dir, f"{split}.zip"),
                                                "zip_dir") for split in SPLITS}
        settings.update({f"{split}_zip_sha256": preparation.sha256_of_file(path)
                         for split, path in zips.items()})
    else:
        if not os.path.isdir(images_dir):
            raise DataError(f"--images_dir: folder not found: {images_dir}")
        settings["images_dir"] = os.path.abspath(images_dir)
    if not overwrite and preparation.is_finished(output_dir, settings):
        counts = preparation.verify_finished(verify_tree, output_dir, splits)
        log(f"{output_dir}: already prepared from the same inputs ({counts}); skipping")
        return counts

    with preparation.atomic_output_dir(output_dir) as temp_dir:
        for split, classes in splits.items():
            target = os.path.join(temp_dir, split)
            os.makedirs(target)
            if zip_dir is not None:
                _copy_split_zip(zips[split], split, classes, target)
            else:
                _resize_split_images(images_dir, classes, target)
            log(f"{split}: {len(classes)} classes written")
        counts = verify_tree(temp_dir, splits)
        preparation.write_marker(temp_dir, {
            "settings": settings, "counts": counts, "pillow_version": PIL.__version__,
            "source": ("split zips copied unchanged" if zip_dir is not None else
                       "resize((84, 84), LANCZOS), JPEG at Pillow's default quality"),
        })
    log(f"{output_dir}: prepared {counts}")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv_dir", required=True, help="folder with train/val/test.csv")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--zip_dir", help="folder with train/val/test.zip at 84x84")
    source.add_argument("--images_dir", help="folder of full-resolution images named as "
                                             "in the CSVs (the original proc_images.py input)")
    parser.add_argument("--output_dir", required=True,
                        help="where to create {train,val,test}/<wnid>/*.jpg "
                             "(the original reads ./data/miniImagenet)")
    return preparation.run_command(parser, argv, lambda args: prepare_miniimagenet(
        args.csv_dir, args.output_dir, zip_dir=args.zip_dir, images_dir=args.images_dir,
        overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
