"""The discipline of a run folder, shared by the supervised and the RL trainers.

A run folder (the supervised experiment directory, or an RL ``--logdir``) belongs to one
training process at a time and to one run:

- :class:`RunLock`: an ``fcntl`` lock on ``<folder>/.lock``. The kernel drops it when the
  holder dies, however it dies, so a lock left by a killed process is taken over with a note
  and never blocks; a second live trainer gets a clear error naming the holder's pid.
- :func:`check_fresh_start`: starting a *new* run (no resume) where checkpoints already exist
  is refused unless ``--overwrite`` is given, and :func:`clear_run` then removes the old run's
  files (only the names a run writes; anything else in the folder is left alone).
- :func:`clean_leftovers`: the debris of writes cut short by a kill or a full disk
  (``ckpt-N_temp/`` folders, data shards without an index, temporary state files).
- :func:`truncate_progress_csv` and :func:`truncate_events`: after a resume at iteration k,
  rows and TensorBoard points of iterations >= k (written after the restored checkpoint,
  before a kill) are dropped, so the curves have no duplicated steps.
- :func:`compare_settings`: a run records its resolved configuration, the settings compared
  on resume and the code version in ``config.json`` (:func:`read_record`); on resume a changed
  setting is either applied (one printed line each) or refused when it would mix two different
  models in one folder. Runs from before config.json recorded ``run_settings.json``, which is
  still read.

Finding the newest *intact* checkpoint is :mod:`maml_tf.checkpoint`'s job. TensorFlow is
imported only inside the functions that read event files, so flag validators may use this
module cheaply.
"""
from __future__ import annotations

import csv
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import time
from typing import Callable, Iterable, Optional

LOCK_NAME = ".lock"
RECORD_NAME = "config.json"
SETTINGS_NAME = "run_settings.json"   # the record of runs made before config.json (read only)
_TEMP_DIR = re.compile(r"^ckpt-\d+_temp")
_DATA_SHARD = re.compile(r"^(ckpt-\d+)\.data-\d+-of-\d+$")


class RunFolderError(ValueError):
    """The folder cannot be used as asked (locked, holds another run, unwritable)."""


# --------------------------------------------------------------------------- lock
class RunLock:
    """Exclusive lock of a run folder for the lifetime of one training process.

    Example:
        >>> import pathlib, tempfile
        >>> from maml_tf.run_folder import RunLock
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder):                     # held while the run trains
        ...     RunLock(folder).acquire()             # a second trainer in the same folder
        Traceback (most recent call last):
        maml_tf.run_folder.RunFolderError: ... is in use by another training process (pid ...
        >>> pathlib.Path(folder, ".lock").read_text()     # released: emptied on a clean exit
        ''
    """

    def __init__(self, directory: str, log: Callable[[str], None] = print):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_NAME)
        self.log = log
        self._handle = None

    def acquire(self) -> "RunLock":
        try:
            os.makedirs(self.directory, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise RunFolderError(f"cannot create the lock file {self.path}: "
                                 f"{error.strerror or error}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"{self.directory} is in use by another training process ({holder}); two "
                f"trainers in one folder would mix their checkpoints. Wait for it, stop it, "
                f"or choose another --logdir") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:   # a clean exit empties the file: the previous holder was killed
            self.log(f"Taking over the lock of a process that ended without releasing it "
                     f"({previous})")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.flush()
        except OSError:
            pass
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------- fresh or resumed
def checkpoint_iterations(directory: str) -> list[int]:
    """Iterations with a ``ckpt-N.index`` file in ``directory``, ascending (not verified)."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")):
        match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(path))
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def check_fresh_start(directory: str, checkpoint_dirs: Iterable[str], resume: bool,
                      overwrite: bool, resume_flag: str = "--resume") -> None:
    """Refuses a fresh start over existing checkpoints unless ``overwrite``.

    Called by the lock holder before anything is built, so the refusal costs nothing.
    """
    if resume or overwrite:
        return
    for checkpoint_dir in checkpoint_dirs:
        iterations = checkpoint_iterations(checkpoint_dir)
        if iterations:
            raise RunFolderError(
                f"{directory} already holds a run (checkpoints up to ckpt-{iterations[-1]} in "
                f"{checkpoint_dir}); {resume_flag}=False would start a new run over it. Leave "
                f"{resume_flag} on to continue it, pass --overwrite to delete it and start "
                f"again, or choose another --logdir")


def clear_run(directory: str, patterns: Iterable[str], log: Callable[[str], None] = print) -> int:
    """Deletes the files and folders matching ``patterns`` in ``directory`` (--overwrite)."""
    removed = 0
    for pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed += 1
    if removed:
        log(f"--overwrite: removed {removed} files/folders of the previous run in {directory}")
    return removed


def clean_leftovers(directory: str, log: Callable[[str], None] = print) -> list[str]:
    """Removes what interrupted checkpoint writes leave behind; returns the names removed.

    A checkpoint is complete once its ``.index`` exists (TensorFlow writes it last, under a
    temporary name, and renames it), so data shards without an index and ``*_temp`` folders
    are debris. Only the lock holder may call this: another process could be mid-write.
    """
    if not os.path.isdir(directory):
        return []
    names = os.listdir(directory)
    indexed = {name[:-len(".index")] for name in names if name.endswith(".index")}
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        shard = _DATA_SHARD.match(name)
        if (_TEMP_DIR.match(name) or ".tempstate" in name or name.endswith(".rewrite-tmp")
                or name.startswith("checkpoint.tmp")
                or (shard and shard.group(1) not in indexed)):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    continue
            removed.append(name)
    if removed:
        log(f"Removed {len(removed)} leftovers of interrupted checkpoint writes in {directory}: "
            f"{', '.join(sorted(removed)[:5])}{' ...' if len(removed) > 5 else ''}")
    return removed


# --------------------------------------------------------------------------- logs after resume
def _atomic_write(path: str, write: Callable) -> None:
    temporary = path + ".rewrite-tmp"
    with open(temporary, "w", newline="") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def truncate_progress_csv(path: str, first_dropped: int) -> int:
    """Keeps the header and the rows of iterations < ``first_dropped``; returns rows dropped."""
    if not os.path.exists(path):
        return 0
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    column = header.index("iteration") if "iteration" in header else 0
    kept = [row for row in body if row and _as_int(row[column]) is not None
            and _as_int(row[column]) < first_dropped]
    dropped = len(body) - len(kept)
    if dropped:
        _atomic_write(path, lambda handle: csv.writer(handle).writerows([header] + kept))
    return dropped


def _as_int(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def truncate_events(directory: str, first_dropped: int) -> int:
    """Drops TensorBoard summaries with step >= ``first_dropped`` from the event files
    directly in ``directory`` (each file rewritten under a temporary name, then renamed);
    returns the number of events dropped."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    dropped = 0
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "events.out.tfevents*"))):
        kept, lost = [], 0
        try:
            for record in tf.data.TFRecordDataset(path):
                raw = record.numpy()
                event = event_pb2.Event.FromString(raw)
                if event.HasField("summary") and event.step >= first_dropped:
                    lost += 1
                else:
                    kept.append(raw)
        except tf.errors.DataLossError:
            lost += 1   # a record cut short by a kill: drop the tail
        if lost:
            temporary = path + ".rewrite-tmp"
            with tf.io.TFRecordWriter(temporary) as writer:
                for raw in kept:
                    writer.write(raw)
            os.replace(temporary, path)
            dropped += lost
    return dropped


# --------------------------------------------------------------------------- settings
def code_version() -> str:
    """The git commit of this checkout (``+dirty`` with uncommitted changes), else the
    package version: what a record needs to say which code produced a run."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode == 0 and commit.stdout.strip():
            dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   timeout=10)
            return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return f"maml-tf2 {version('maml-tf2')}"
    except Exception:   # noqa: BLE001 -- not installed as a package either
        return "unknown (no git checkout, no installed package)"


def read_record(directory: str) -> Optional[dict]:
    """The run's ``config.json`` (keys ``config``, ``resume_settings``, ``code_version``,
    ``experiment``), or None for a run without one; an unreadable file is an error naming it
    (a record that cannot be read must not be silently replaced by the flags)."""
    path = os.path.join(directory, RECORD_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read the run record {path}: {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise RunFolderError(f"the run record {path} has no 'config' object")
    return record


def _recorded_settings(directory: str, log: Callable[[str], None]) -> Optional[dict]:
    """The settings compared on resume: config.json's, else an old run's run_settings.json."""
    record = None
    try:
        record = read_record(directory)
    except RunFolderError as error:
        log(f"warning: {error}; recording the current settings afresh")
    if record is not None:
        return record.get("resume_settings")
    path = os.path.join(directory, SETTINGS_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        log(f"warning: {path} is unreadable; recording the current settings afresh")
    return None


def compare_settings(directory: str, settings: dict, fixed: dict,
                     log: Callable[[str], None] = print, compare: bool = True,
                     config: Optional[dict] = None, experiment: Optional[str] = None) -> None:
    """Checks ``settings`` against the run's recorded ones (when ``compare``: a resume), then
    writes the record, ``config.json``: the resolved ``config`` (``settings`` if not given),
    ``settings``, the preset name ``experiment`` and the code version.

    ``fixed`` maps setting names that must not change (they define the model or the method)
    to the flag that sets them; a change raises RunFolderError. Any other change is applied
    from the command line, with one line each so it is never silent.
    """
    recorded = _recorded_settings(directory, log) if compare else None
    if isinstance(recorded, dict):
        changed = [name for name in settings
                   if name in recorded and recorded[name] != _jsonable(settings[name])]
        refused = [name for name in changed if name in fixed]
        if refused:
            details = "; ".join(f"{fixed[n]} was {recorded[n]!r}, now {settings[n]!r}"
                                for n in refused)
            raise RunFolderError(
                f"the run in {directory} was trained with other settings that define its "
                f"model or method ({details}): use the run's values, --overwrite to start "
                f"again, or another --logdir")
        for name in changed:
            log(f"Resume: {name} changed from {recorded[name]!r} to {settings[name]!r} "
                f"(applied from this command)")
    record = {"config": _jsonable(config if config is not None else settings),
              "resume_settings": _jsonable(settings), "experiment": experiment,
              "code_version": code_version(),
              "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = os.path.join(directory, RECORD_NAME)
    try:
        _atomic_write(path, lambda handle: json.dump(record, handle, indent=1, sort_keys=True))
    except OSError as error:
        raise RunFolderError(f"cannot write {path}: {error.strerror or error}") from None


# --------------------------------------------------------------------------- export target
def export_dir_problem(path: str) -> Optional[str]:
    """None when a SavedModel may be written to ``path``, else why not.

    Allowed: a new folder in a writable place, an empty folder, or a SavedModel written
    before (an export replaces it whole). Anything else is refused rather than overwritten.
    """
    if os.path.isfile(path):
        return f"{path} is a file"
    if os.path.isdir(path):
        entries = os.listdir(path)
        if entries and "saved_model.pb" not in entries:
            return (f"{path} exists and is not a SavedModel; refusing to replace its "
                    f"{len(entries)} entries")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path}: {parent} is not a writable folder"
    return None


def _jsonable(value):
    """JSON's form of a setting: tuples as lists, nested dicts and lists converted too."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    return value
