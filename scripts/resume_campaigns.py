"""Resume every long run in one command: on a fresh checkout, after a restart, at a session's start.

    .venv/bin/python scripts/resume_campaigns.py              # restore logs/, start what is not running
    .venv/bin/python scripts/resume_campaigns.py --dry_run    # only say what it would do
    .venv/bin/python scripts/resume_campaigns.py --jobs=table1,packer   # leave the RL runs out
    .venv/bin/python scripts/resume_campaigns.py --jobs=rl,packer --rl_workers=2   # RL alone

Why: the Table 1 campaign and the RL runs take days of machine time and the machine can be a
new one every session. Resuming them took three steps that had to be right every time: put
the packed checkpoints back below ``logs/`` without overwriting newer ones, start each driver
in a scheduling group of its own at low priority (README "Long runs across sessions": ``nice``
alone does not keep a run from taking half the cores from the work beside it), and start the
packer that copies their checkpoints into the repository. This does the three, and leaves
alone a driver that already runs, so running it twice starts nothing twice.

The jobs (:data:`JOBS`): ``table1`` is ``scripts/campaign.py train`` (autogroup nice 15),
``rl`` is ``scripts/rl_campaign.py train`` (19: about 70% of the CPU for Table 1 when both
want it), ``packer`` is ``scripts/pack_checkpoints.py --every_minutes=20 --commit logs`` (19).
Each appends to its log (``logs/campaign/campaign.log``, ``logs/rl/rl_campaign.log``,
``logs/campaign/pack.log``); stop one with SIGTERM to its pid (a training run saves first).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Job:
    """One background job: its command after the interpreter, its log, its group's nice."""
    name: str
    args: tuple[str, ...]
    log: str
    group_nice: int


JOBS = (
    Job("table1", ("scripts/campaign.py", "train"), "logs/campaign/campaign.log", 15),
    Job("rl", ("scripts/rl_campaign.py", "train"), "logs/rl/rl_campaign.log", 19),
    Job("packer", ("scripts/pack_checkpoints.py", "--every_minutes=20", "--commit", "logs"),
        "logs/campaign/pack.log", 19),
)


def restore(packed: str, logs: str, dry_run: bool = False) -> list[str]:
    """Copies every file below ``packed`` that ``logs`` lacks (``cp -rn``, keeping modification
    times so the packer sees the copies as current); returns the paths written (with
    ``dry_run``: that would be written). A file that exists is never replaced: a run that went
    on below ``logs/`` keeps its newer state."""
    written = []
    for current, _, files in os.walk(packed):
        target_dir = os.path.join(logs, os.path.relpath(current, packed))
        for name in files:
            target = os.path.join(target_dir, name)
            if not os.path.exists(target):
                if not dry_run:
                    os.makedirs(target_dir, exist_ok=True)
                    shutil.copy2(os.path.join(current, name), target)
                written.append(target)
    return written


def running_pids(args: tuple[str, ...], proc: str = "/proc") -> list[int]:
    """Pids of processes that run ``args`` after an interpreter (any path before the
    script's; options after them, e.g. ``--num_workers=2``, allowed), this one left out."""
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:   # ended meanwhile, or not ours to read
            continue
        argv = [a for a in argv if a]
        if any(argv[i].endswith(args[0]) and argv[i + 1:i + len(args)] == list(args[1:])
               for i in range(1, len(argv) - len(args) + 1)):
            found.append(int(entry))
    return sorted(found)


def _lower_priority(group_nice: int):
    """In the child, after ``setsid``: the new session's scheduling group at ``group_nice``
    (a kernel without autogroups, or a container that forbids it, keeps the plain nice) and
    the process at nice 19."""
    def apply():
        try:
            with open("/proc/self/autogroup", "w") as handle:
                handle.write(str(group_nice))
        except OSError:
            pass
        os.nice(19)
    return apply


def start(job: Job, root: str, python: str, extra: tuple[str, ...] = ()) -> int:
    """Starts ``job`` (its arguments, then ``extra``) in the background in a session of its
    own, its output appended to its log; returns the pid."""
    log = os.path.join(root, job.log)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(os.devnull) as stdin, open(log, "ab") as out:
        process = subprocess.Popen([python, *job.args, *extra], cwd=root, stdin=stdin,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_lower_priority(job.group_nice))
    return process.pid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", default=",".join(j.name for j in JOBS),
                        help="which of " + ", ".join(j.name for j in JOBS) + " to start")
    parser.add_argument("--dry_run", action="store_true", help="say what would be done")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of the jobs (default: this one)")
    parser.add_argument("--rl_workers", type=int, default=0,
                        help="sampler worker processes of the RL campaign's MuJoCo runs "
                        "(its --num_workers; 0: in-process, for sharing the cores with the "
                        "Table 1 campaign; 2 with --jobs=rl,packer, the RL runs alone)")
    args = parser.parse_args(argv)
    if args.rl_workers < 0:
        parser.error("--rl_workers must be >= 0")
    extra = {"rl": (f"--num_workers={args.rl_workers}",) if args.rl_workers else ()}
    by_name = {j.name: j for j in JOBS}
    names = [n for n in args.jobs.split(",") if n]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"--jobs: unknown {', '.join(unknown)} (known: {', '.join(by_name)})")
    packed, logs = os.path.join(ROOT, "checkpoints"), os.path.join(ROOT, "logs")
    restored = restore(packed, logs, dry_run=args.dry_run)
    print(f"{'would restore' if args.dry_run else 'restored'} {len(restored)} files from "
          "checkpoints/ into logs/")
    for name in names:
        job = by_name[name]
        pids = running_pids(job.args)
        if pids:
            print(f"{name}: already running (pid {', '.join(map(str, pids))})")
        elif args.dry_run:
            print(f"{name}: would start {' '.join(job.args + extra.get(name, ()))} >> {job.log}")
        else:
            pid = start(job, ROOT, args.python, extra.get(name, ()))
            print(f"{name}: started pid {pid}, log {job.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
