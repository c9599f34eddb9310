"""Copy the latest checkpoint of long runs into ``checkpoints/`` so they survive a new checkout.

    .venv/bin/python scripts/pack_checkpoints.py logs/omniglot5way logs/rl/cheetah_vel_maml
    # later, on a fresh checkout:
    mkdir -p logs && cp -rn checkpoints/. logs/ && ./run.sh omniglot_5way_1shot   # resumes

Why: ``logs/`` is not versioned (events files and every checkpoint are large), but a
60,000-iteration run spans several sessions. For every experiment directory below the given
folders this copies the newest ``ckpt-N`` files (model and optimizer state), the milestone
checkpoints every ``--keep_every`` iterations, a ``checkpoint`` state file naming them, the
test results (CSV and pickle, ``milestones/``) and the TensorBoard event files (validation
curve and wall time for ``scripts/campaign.py``), keeping the path relative to the repository
root. A ``best/`` sub-folder (the RL trainer's best policy) is packed too.

``--every_minutes=N`` packs again every N minutes until stopped, beside the running trainings,
so that ``checkpoints/`` never falls more than N minutes behind ``logs/`` on a machine that
may vanish with its disk (a killed run loses one checkpoint interval; a lost machine then
loses N minutes more, not the session; started in the background at low priority as README
"The Table 1 campaign" shows).

A run whose packed copy already holds what a pack would copy (same names, sizes and
modification times, or the same bytes) is left alone, and only changed result files are
copied, so ``logs`` itself can be named: a round then costs one listing per finished run and
follows the campaigns onto runs they start later (Omniglot 5-way 5-shot after 20-way, the
next RL run), which a list of folders named at the start would miss:

    .venv/bin/python scripts/pack_checkpoints.py --every_minutes=20 --commit logs

``--commit`` also commits what changed below ``--out`` after every round (only those paths:
whatever else is staged stays staged and uncommitted), so the packed state is in the
repository's history and not only in a working tree that may be lost with the session.

Each run folder is written beside its packed copy and swapped in whole, so an interrupted
pack leaves the previous copy; a checkpoint the training deletes during the copy (it keeps
only its newest) makes that folder's pack start again from the new newest.
"""
import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ATTEMPTS = 3   # copies of a run folder tried while its training replaces the newest checkpoint
_GIT_ATTEMPTS = 3   # a commit tried again while another git command holds the index lock


def _iteration(prefix: str) -> int:
    return int(prefix.rsplit("-", 1)[1])


def _milestone_prefixes(directory: str, keep_every: int) -> list[str]:
    """Checkpoints at multiples of ``keep_every`` (scripts/campaign.py tests them later)."""
    if keep_every <= 0:
        return []
    names = (n[:-len(".index")] for n in os.listdir(directory)
             if n.startswith("ckpt-") and n.endswith(".index"))
    return [n for n in names if n[5:].isdigit() and _iteration(n) > 0
            and _iteration(n) % keep_every == 0]


def _packed_path(directory: str, destination_root: str, logs_root: str) -> str:
    """Where ``directory`` is packed: logs/X as checkpoints/X (else relative to the root)."""
    relative = os.path.relpath(directory, logs_root)
    if relative.startswith(".."):
        relative = os.path.relpath(directory, ROOT)
    if relative.startswith(".."):
        raise ValueError(f"{directory} is neither below {logs_root} nor below {ROOT}")
    return os.path.join(destination_root, relative)


def _is_result(name: str) -> bool:
    """Test results and TensorBoard event files: what status and plots read back."""
    return name.endswith((".csv", ".pkl")) or name.startswith("events.out.tfevents.")


def pack_directory(directory: str, destination_root: str, keep_every: int = 10000,
                   logs_root: str = os.path.join(ROOT, "logs")) -> list[str]:
    """Packs ``directory`` if it holds checkpoints; returns the files written.

    Beside the newest checkpoint: the milestone checkpoints (every ``keep_every``
    iterations), test results and TensorBoard event files, so that a run continued on another
    machine still has its validation curve, wall time and untested milestones."""
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        return []
    target = _packed_path(directory, destination_root, logs_root)
    if not os.path.isdir(target) and os.path.isdir(target + ".old"):
        os.rename(target + ".old", target)   # a pack cut between its two renames
    if _same_files(_kept_files(directory, os.path.basename(latest), keep_every), directory,
                   target):
        return []   # nothing new since the last pack: a finished run costs one listing
    staging = target + ".packing"
    for attempt in range(_ATTEMPTS):
        if os.path.isdir(staging):
            shutil.rmtree(staging)
        os.makedirs(staging)
        try:
            names = _copy_run(directory, staging, os.path.basename(latest), keep_every)
        except FileNotFoundError:   # the training replaced its newest checkpoint meanwhile
            shutil.rmtree(staging)
            if attempt == _ATTEMPTS - 1:
                raise
            latest = tf.train.latest_checkpoint(directory)
            continue
        _swap_in(staging, target)
        return [os.path.join(target, name) for name in names]


def _kept_prefixes(directory: str, prefix: str, keep_every: int) -> list[str]:
    return [prefix] + [p for p in _milestone_prefixes(directory, keep_every) if p != prefix]


def _kept_files(directory: str, prefix: str, keep_every: int) -> list[str]:
    """The paths below ``directory`` (relative) that a pack of it copies, ``checkpoint``
    (written, not copied) left out."""
    kept = _kept_prefixes(directory, prefix, keep_every)
    names = [n for n in os.listdir(directory)
             if any(n.startswith(p + ".") for p in kept) or _is_result(n)]
    for current, _, files in os.walk(os.path.join(directory, "milestones")):
        names += [os.path.relpath(os.path.join(current, f), directory) for f in files]
    return sorted(names)


def _same_file(source: str, copy: str) -> bool:
    """Same size and either the same modification time (``copy2`` keeps it) or the same bytes
    (a copy restored with ``cp -r``, which does not)."""
    try:
        a, b = os.stat(source), os.stat(copy)
    except FileNotFoundError:
        return False
    return a.st_size == b.st_size and (a.st_mtime_ns == b.st_mtime_ns
                                       or filecmp.cmp(source, copy, shallow=False))


def _same_files(names: list[str], directory: str, target: str) -> bool:
    """True when ``target`` already holds exactly ``names`` as they are in ``directory``."""
    if not os.path.isdir(target):
        return False
    packed = [os.path.relpath(os.path.join(current, f), target)
              for current, _, files in os.walk(target) for f in files]
    return (sorted(n for n in packed if n != "checkpoint") == names
            and all(_same_file(os.path.join(directory, n), os.path.join(target, n))
                    for n in names))


def _copy_run(directory: str, staging: str, prefix: str, keep_every: int) -> list[str]:
    """Copies what :func:`pack_directory` keeps into ``staging``; returns the names written."""
    written = []
    kept = _kept_prefixes(directory, prefix, keep_every)
    for name in _kept_files(directory, prefix, keep_every):
        if os.path.dirname(name) == "":   # milestones/ is copied whole below
            shutil.copy2(os.path.join(directory, name), os.path.join(staging, name))
            written.append(name)
    if os.path.isdir(os.path.join(directory, "milestones")):
        shutil.copytree(os.path.join(directory, "milestones"),
                        os.path.join(staging, "milestones"))
        written.append("milestones")
    tf.compat.v1.train.update_checkpoint_state(
        staging, prefix, all_model_checkpoint_paths=sorted(kept, key=_iteration))
    return written + ["checkpoint"]


def _swap_in(staging: str, target: str) -> None:
    """Replaces ``target`` by ``staging`` with two renames: the old copy stays whole until
    the new one is complete."""
    retired = target + ".old"
    if os.path.isdir(retired):   # a pack cut after its renames, before this removal
        shutil.rmtree(retired)
    if os.path.isdir(target):
        os.rename(target, retired)
    os.rename(staging, target)
    if os.path.isdir(retired):
        shutil.rmtree(retired)


def pack_run_results(directory: str, destination_root: str,
                     logs_root: str = os.path.join(ROOT, "logs")) -> list[str]:
    """Packs the results beside a run's checkpoint folders (an RL run keeps its checkpoints
    in ``checkpoints/`` and ``best/`` and its test results, ``progress.csv``, ``config.json``
    and event files one level up), and those of a test-only run (a random baseline: test
    results and no checkpoint, which a fresh checkout would otherwise test again, for an
    hour on the ant); returns the files written."""
    names = os.listdir(directory)
    subfolders = [os.path.join(directory, d) for d in names
                  if os.path.isdir(os.path.join(directory, d))]
    test_only = any(n.startswith("test_") and n.endswith(".pkl") for n in names)
    if not (test_only or any(tf.train.latest_checkpoint(d) for d in subfolders)):
        return []
    target = _packed_path(directory, destination_root, logs_root)
    os.makedirs(target, exist_ok=True)
    written = []
    for name in names:
        source, copy = os.path.join(directory, name), os.path.join(target, name)
        if (_is_result(name) or name == "config.json") and not _same_file(source, copy):
            shutil.copy2(source, copy)
            written.append(copy)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="run folders below logs/")
    parser.add_argument("--out", default=os.path.join(ROOT, "checkpoints"))
    parser.add_argument("--keep_every", type=int, default=10000,
                        help="also pack checkpoints at multiples of this (0: only the newest)")
    parser.add_argument("--every_minutes", type=float, default=0.0,
                        help="pack again every this many minutes until stopped (0: once)")
    parser.add_argument("--commit", action="store_true",
                        help="git-commit what changed below --out after every pack (only "
                             "those paths; other staged changes stay staged)")
    args = parser.parse_args()
    for folder in args.folders:
        if not os.path.isdir(folder):
            sys.exit(f"error: {folder} is not a folder")
    if args.every_minutes < 0:
        sys.exit(f"error: --every_minutes must be >= 0, got {args.every_minutes}")
    existing = os.path.abspath(args.out)
    while not os.path.isdir(existing):   # --out is created by the first pack
        existing = os.path.dirname(existing)
    if args.commit and _git(existing, "rev-parse", "--show-toplevel").returncode != 0:
        sys.exit(f"error: --commit: {args.out} is not inside a git repository")
    while True:
        written = pack_folders(args.folders, args.out, args.keep_every)
        for path in written:
            print(path, flush=True)
        if args.commit:
            commit = commit_packed(args.out)
            print(f"committed {commit}" if commit else "nothing new to commit", flush=True)
        if not args.every_minutes:
            return
        print(f"packed at {time.strftime('%H:%M:%S')}; again in {args.every_minutes:g} min",
              flush=True)
        time.sleep(60 * args.every_minutes)


def _git(where: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", where, *args], capture_output=True, text=True)


def commit_packed(destination_root: str, log=print):
    """Commits the changes below ``destination_root`` (new, changed and deleted files) and
    nothing else; returns the new commit's hash, or None when nothing changed or git failed
    (said through ``log``: the next round tries again). The message names the new
    checkpoints."""
    changed = _git(destination_root, "status", "--porcelain", "-uall", "--", ".")
    if changed.returncode != 0 or not changed.stdout.strip():
        return None
    root = _git(destination_root, "rev-parse", "--show-toplevel").stdout.strip()
    new = []
    for line in changed.stdout.splitlines():
        match = re.search(r"ckpt-(\d+)\.index$", line)
        if match and line[:2] in ("??", "A "):
            path = os.path.join(root, line[3:].strip('"'))
            run = os.path.relpath(os.path.dirname(path), os.path.abspath(destination_root))
            new.append(f"{run} ckpt-{match.group(1)}")
    message = (f"checkpoints packed at {time.strftime('%H:%M UTC', time.gmtime())} "
               f"(pack_checkpoints --commit): "
               f"{', '.join(sorted(new)) if new else 'results and event files'}")
    for attempt in range(_GIT_ATTEMPTS):
        added = _git(destination_root, "add", "-A", "--", ".")
        done = added.returncode == 0 and _git(
            destination_root, "commit", "-q", "-m", message, "--", ".").returncode == 0
        if done:
            return _git(destination_root, "rev-parse", "--short", "HEAD").stdout.strip()
        time.sleep(5 * (attempt + 1))   # another git command held the index lock
    log(f"warning: could not commit {destination_root} (git busy or failing); "
        "the next round tries again")
    return None


def pack_folders(folders, destination_root: str, keep_every: int = 10000,
                 logs_root: str = os.path.join(ROOT, "logs")) -> list[str]:
    """Packs every run below ``folders`` (checkpoint folders and RL runs' results)."""
    written = []
    for folder in folders:
        for current, _, _ in os.walk(folder):
            current = os.path.abspath(current)
            if tf.train.latest_checkpoint(current):
                written += pack_directory(current, destination_root, keep_every, logs_root)
            else:
                written += pack_run_results(current, destination_root, logs_root)
    return written


if __name__ == "__main__":
    main()
