"""Builds the original's ``./data/omniglot_resized`` tree from the two official Omniglot zips.

Usage::

    python -m data_generators.prepare_omniglot \\
        --background_zip=PATH/images_background.zip \\
        --evaluation_zip=PATH/images_evaluation.zip \\
        --output_dir=./data/omniglot_resized

The original README moves both archives' alphabets into one folder and runs
``resize_images.py``, which opens every 105x105 PNG and saves
``im.resize((28, 28), resample=Image.LANCZOS)`` over it. The PNGs are 1-bit (mode '1'), and
for mode '1' Pillow ignores the requested filter and uses nearest neighbour, so the original
28x28 data is a nearest-neighbour downsample. That is reproduced by default, by making the
same call on the same mode. ``--true_lanczos`` converts to 8-bit grey first so the filter
really is Lanczos (grey-level edges); it is NOT the original's data and is offered only for
experiments on that difference.

Result: ``<output_dir>/<alphabet>/<character>/<file>.png`` (50 alphabets, 1623 characters,
20 images each), verified, with a ``.prepared.json`` marker; see
:mod:`data_generators.preparation` for the atomicity and re-run rules.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import NamedTuple, Optional

import PIL
from PIL import Image

from data_generators import preparation
from data_generators.base import DataError

IMAGE_SIZE = (28, 28)


class OmniglotCounts(NamedTuple):
    """Counts the merged tree must have (the official data's by default).

    Example:
        >>> from data_generators.prepare_omniglot import OmniglotCounts, count_tree
        >>> OmniglotCounts()
        OmniglotCounts(alphabets=50, characters=1623, images_per_character=20)
        >>> count_tree({"Latin/character01": ["1.png", "2.png"],
        ...             "Latin/character02": ["1.png", "2.png"],
        ...             "Greek/character01": ["1.png", "2.png"]})
        OmniglotCounts(alphabets=2, characters=3, images_per_character=2)
    """

    alphabets: int = 50
    characters: int = 1623
    images_per_character: int = 20


def _png_members(archive, zip_path: str) -> dict:
    """``{(alphabet, character, file): member name}`` for the PNGs of one archive.

    Accepts both the official layout ``images_background/<alphabet>/<character>/<file>.png``
    and archives without the top folder; hidden and macOS metadata entries are skipped.
    """
    members = {}
    for name in archive.namelist():
        parts = name.split("/")
        if name.endswith("/") or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if not parts[-1].lower().endswith(".png"):
            continue
        if len(parts) not in (3, 4):
            raise DataError(f"{zip_path}: unexpected layout for {name} "
                            "(want [<top>/]<alphabet>/<character>/<file>.png)")
        members[tuple(parts[-3:])] = name
    if not members:
        raise DataError(f"{zip_path}: holds no Omniglot PNG images")
    return members


def count_tree(classes: dict) -> OmniglotCounts:
    """Counts of a ``{alphabet/character: files}`` listing; images = the smallest class."""
    alphabets = {name.split("/")[0] for name in classes}
    sizes = {len(files) for files in classes.values()}
    if len(sizes) > 1:
        smallest = min(classes, key=lambda c: len(classes[c]))
        raise DataError(f"character folders hold different numbers of images "
                        f"({sorted(sizes)}); e.g. {smallest} has {len(classes[smallest])}")
    return OmniglotCounts(len(alphabets), len(classes), sizes.pop() if sizes else 0)


def _check_counts(found: OmniglotCounts, expected: Optional[OmniglotCounts], where: str):
    if expected is not None and found != expected:
        raise DataError(f"{where}: found {found.alphabets} alphabets, {found.characters} "
                        f"characters, {found.images_per_character} images each; expected "
                        f"{expected.alphabets}, {expected.characters}, "
                        f"{expected.images_per_character} (incomplete or wrong archives?)")


def verify_tree(folder: str, expected: Optional[OmniglotCounts]) -> OmniglotCounts:
    """Checks a prepared tree's counts; returns them."""
    found = count_tree(preparation.list_class_tree(folder, depth=2))
    _check_counts(found, expected, folder)
    return found


def resize_like_original(image: Image.Image, true_lanczos: bool) -> Image.Image:
    """The original's ``resize((28, 28), resample=LANCZOS)`` (nearest neighbour on mode '1')."""
    if true_lanczos:
        image = image.convert("L")
    return image.resize(IMAGE_SIZE, resample=Image.LANCZOS)


def prepare_omniglot(background_zip: str, evaluation_zip: str, output_dir: str,
                     true_lanczos: bool = False, overwrite: bool = False,
                     expected: Optional[OmniglotCounts] = OmniglotCounts(),
                     log=print) -> OmniglotCounts:
    """Prepares (or verifies and skips) ``output_dir``; returns the verified counts."""
    archives = {"background_zip": background_zip, "evaluation_zip": evaluation_zip}
    opened = {flag: preparation.open_zip(path, flag) for flag, path in archives.items()}
    settings = {
        "dataset": "omniglot",
        "true_lanczos": bool(true_lanczos),
        "image_size": list(IMAGE_SIZE),
        **{f"{flag}_sha256": preparation.sha256_of_file(path) for flag, path in archives.items()},
    }
    if not overwrite and preparation.is_finished(output_dir, settings):
        counts = preparation.verify_finished(verify_tree, output_dir, expected)
        log(f"{output_dir}: already prepared from the same archives ({counts}); skipping")
        return counts

    members = {}  # (alphabet, character, file) -> (flag, member name)
    for flag, archive in opened.items():
        found = _png_members(archive, archives[flag])
        clash = {key[0] for key in found} & {key[0] for key in members}
        if clash:
            raise DataError(f"--{flag}: alphabet(s) {sorted(clash)[:3]} also appear in the "
                            "other archive; pass the background and evaluation zips")
        members.update({key: (flag, name) for key, name in found.items()})
    listing = collections.defaultdict(list)
    for alphabet, character, file_name in members:
        listing[f"{alphabet}/{character}"].append(file_name)
    _check_counts(count_tree(listing), expected, "--background_zip + --evaluation_zip")

    with preparation.atomic_output_dir(output_dir) as temp_dir:
        for alphabet, character in {key[:2] for key in members}:
            os.makedirs(os.path.join(temp_dir, alphabet, character))

        def resize(item) -> str:
            (alphabet, character, file_name), (flag, name) = item
            data = preparation.read_zip_member(opened[flag], name, archives[flag])
            image = preparation.decode_image(data, f"{archives[flag]}:{name}")
            resize_like_original(image, true_lanczos).save(
                os.path.join(temp_dir, alphabet, character, file_name))
            return image.mode

        log(f"resizing {len(members)} images")
        source_modes = collections.Counter(
            preparation.run_in_threads(resize, sorted(members.items())))
        counts = verify_tree(temp_dir, expected)
        if not true_lanczos and set(source_modes) != {"1"}:
            log(f"warning: source modes {dict(source_modes)}; only mode '1' images get the "
                "original's nearest-neighbour resize")
        preparation.write_marker(temp_dir, {
            "settings": settings,
            "counts": counts._asdict(),
            "source_modes": dict(source_modes),
            "pillow_version": PIL.__version__,
            "resize": ("convert('L') then LANCZOS" if true_lanczos
                       else "resize(LANCZOS) on the source mode (nearest neighbour for '1')"),
        })
    log(f"{output_dir}: prepared {counts}")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--background_zip", required=True, help="images_background.zip")
    parser.add_argument("--evaluation_zip", required=True, help="images_evaluation.zip")
    parser.add_argument("--output_dir", required=True,
                        help="where to create <alphabet>/<character>/*.png "
                             "(the original reads ./data/omniglot_resized)")
    parser.add_argument("--true_lanczos", action="store_true",
                        help="convert to 8-bit grey before the Lanczos resize (NOT the "
                             "original's data, which is a nearest-neighbour downsample)")
    return preparation.run_command(parser, argv, lambda args: prepare_omniglot(
        args.background_zip, args.evaluation_zip, args.output_dir,
        true_lanczos=args.true_lanczos, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
