"""Helpers shared by the two data-preparation commands.

Both commands turn downloaded archives into the folder trees the original code reads
(``./data/omniglot_resized`` and ``./data/miniImagenet``). They share three concerns that are
easy to get subtly wrong, so they live here once:

* atomic output: everything is written into a hidden sibling temp folder and renamed into
  place only after it has been verified, so an interrupted run never leaves a tree that looks
  finished;
* a marker file (``.prepared.json``) recording the inputs and options, so a re-run with the
  same inputs can verify the tree and skip, while a re-run with different inputs refuses to
  silently mix them;
* errors that name the offending file (:class:`DataError`), whether a zip is missing,
  truncated, or holds an undecodable image.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

from PIL import Image

from data_generators.base import DataError

MARKER_NAME = ".prepared.json"


def sha256_of_file(path: str) -> str:
    """Checksum recorded in the marker so a re-run can tell whether its inputs changed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_command(parser, argv: Optional[Sequence[str]], prepare: Callable) -> int:
    """A preparation command's ``main`` after its own flags: adds ``--overwrite``, parses
    ``argv`` and calls ``prepare(args)``; a DataError becomes one ``error:`` line on stderr
    and exit status 1 (no traceback: it names the file or flag to fix)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output_dir")
    args = parser.parse_args(argv)
    try:
        prepare(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def require_file(path: Optional[str], flag: str) -> str:
    """Returns ``path`` or raises a DataError naming the flag and the missing file."""
    if not path:
        raise DataError(f"--{flag} is required")
    if not os.path.isfile(path):
        raise DataError(f"--{flag}: file not found: {path}")
    return path


def open_zip(path: str, flag: str) -> zipfile.ZipFile:
    """Opens a zip archive; a truncated or non-zip file becomes a DataError naming it."""
    require_file(path, flag)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"--{flag}: {path} is not a readable zip archive "
                        f"(truncated or corrupt download?): {error}") from error


def read_zip_member(archive: zipfile.ZipFile, name: str, zip_path: str) -> bytes:
    """Reads one member, turning CRC failures and short reads into a DataError."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as error:
        raise DataError(f"{zip_path}: cannot read member {name}: {error}") from error


def decode_image(data: bytes, description: str) -> Image.Image:
    """Decodes image bytes fully (``load``), so truncated files fail here, not later."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # Pillow raises many types (OSError, SyntaxError, ...)
        raise DataError(f"{description}: not a decodable image: {error}") from error
    return image


def run_in_threads(function: Callable, items: Iterable, workers: int = 4) -> List:
    """``[function(item) for item in items]`` on a few threads, re-raising the first error.

    Preparation writes tens of thousands of small files; most of that time is spent waiting
    on the file system (and in Pillow/zlib code that releases the GIL), so threads overlap it.
    Pending work is cancelled as soon as an item fails.
    """
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(function, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def read_marker(folder: str) -> Optional[dict]:
    """The marker of a finished preparation, or None if there is none (or it is unreadable)."""
    try:
        with open(os.path.join(folder, MARKER_NAME), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_marker(folder: str, marker: dict) -> None:
    with open(os.path.join(folder, MARKER_NAME), "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=2, sort_keys=True)


def is_finished(output_dir: str, settings: dict) -> bool:
    """Whether ``output_dir`` already holds a preparation made from the same settings.

    Raises a DataError when the folder exists but is something else (an unfinished tree, the
    user's own data, or a preparation from other inputs/options): the caller then needs
    ``--overwrite`` or another ``--output_dir``, never a silent merge.
    """
    if not os.path.exists(output_dir):
        return False
    marker = read_marker(output_dir)
    if marker is None:
        raise DataError(f"--output_dir: {output_dir} exists but holds no finished preparation "
                        f"({MARKER_NAME} missing); pass --overwrite to replace it")
    if marker.get("settings") != settings:
        raise DataError(f"--output_dir: {output_dir} was prepared from other inputs or options "
                        f"(see its {MARKER_NAME}); pass --overwrite to replace it")
    return True


def verify_finished(verify: Callable, output_dir: str, *args):
    """Runs ``verify(output_dir, *args)`` on a finished tree, adding the way out on failure."""
    try:
        return verify(output_dir, *args)
    except DataError as error:
        raise DataError(f"{error} (the finished preparation in --output_dir={output_dir} has "
                        "been modified; pass --overwrite to rebuild it)") from error


@contextlib.contextmanager
def atomic_output_dir(output_dir: str) -> Iterator[str]:
    """Yields a temp folder next to ``output_dir`` that replaces it only if the block succeeds.

    The temp folder is hidden (``.<name>.partial-*``) and lives on the same file system, so the
    final ``os.replace`` is a rename. An existing ``output_dir`` (allowed only with
    ``--overwrite``; see :func:`is_finished`) is moved aside first and deleted afterwards.
    """
    output_dir = os.path.abspath(output_dir)
    parent, name = os.path.split(output_dir)
    os.makedirs(parent, exist_ok=True)
    temp_dir = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would survive the rename
    try:
        yield temp_dir
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    old_dir = None
    if os.path.exists(output_dir):
        old_dir = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
        os.replace(output_dir, os.path.join(old_dir, name))
    os.replace(temp_dir, output_dir)
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)


def list_class_tree(root: str, depth: int) -> dict:
    """``{class relative path: sorted file names}`` for a tree whose classes are ``depth`` deep.

    Hidden entries (the marker, editor files) are skipped. Used to verify a finished tree.
    """
    classes = {}

    def walk(folder: str, relative: str, remaining: int) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            child = f"{relative}/{entry.name}" if relative else entry.name
            if remaining == 1:
                classes[child] = sorted(name for name in os.listdir(entry.path)
                                        if not name.startswith("."))
            else:
                walk(entry.path, child, remaining - 1)

    walk(root, "", depth)
    return classes
