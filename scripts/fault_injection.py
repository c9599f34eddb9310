"""Fault injection: trains, kills, damages and misuses runs as a hostile but fair user would,
then prints one table (docs/RESULTS.md, "Reliability").

    flock /tmp/maml_heavy.lock .venv/bin/python scripts/fault_injection.py --kills=10

Everything happens in a temporary folder (``--workdir``), with the project's own command
lines (main.py, python -m rl.main) run as subprocesses:

- kill -9 at random times during a sinusoid training (the original's 1000-iteration
  checkpoint interval) and a point-robot training, each followed by a resume that must
  restore the newest intact checkpoint on disk and continue right after it;
- SIGINT, SIGINT twice, SIGTERM: one line, status 128 + signal, and a checkpoint that holds
  exactly the iterations its name says (Adam's step count = iteration + 1);
- damaged checkpoints (empty/truncated index, truncated/flipped/missing data, missing or
  garbled state file): resume and test must fall back to the intact one with a warning;
- a file-size limit (RLIMIT_FSIZE, the kernel's EFBIG: a real failing write) in the middle of
  a checkpoint write;
- bad inputs: each must fail with status != 0, a message naming the flag or file, and no
  Python traceback.

Iterations lost by a kill: exact for RL (``progress.csv`` has a row per finished iteration);
for the sinusoid run estimated from its last progress line and rate (it prints every 1000).
"""
from __future__ import annotations

import argparse
import glob
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.checkpoint_damage import damage_checkpoint  # noqa: E402
PY = sys.executable
SINE = ["main.py", "--datasource=sinusoid", "--norm=None", "--update_batch_size=10",
        "--update_lr=0.01"]
SINE_DIR = "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"
POINT = ["-m", "rl.main", "--env_name=point", "--meta_batch_size=10", "--fast_batch_size=10",
         "--hidden_sizes=32,32"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def start(args, **kwargs):
    """A child whose output lines are collected, with their arrival times, by a thread."""
    process = subprocess.Popen([PY, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, **kwargs)
    process.lines = []

    def read():
        for line in process.stdout:
            process.lines.append((time.time(), line))

    process.reader = threading.Thread(target=read, daemon=True)
    process.reader.start()
    return process


def finish(process, timeout=300):
    """Waits for the child; returns its whole output."""
    process.wait(timeout=timeout)
    process.reader.join(timeout=30)
    return "".join(line for _, line in process.lines)


def run(args, timeout=600, **kwargs):
    done = subprocess.run([PY, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    return done.returncode, done.stdout + done.stderr


def wait_for(process, pattern, timeout=300):
    """Waits until a line containing ``pattern`` arrived; returns the output so far."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = "".join(line for _, line in process.lines)
        if pattern in text:
            return text
        if process.poll() is not None and not process.reader.is_alive():
            break
        time.sleep(0.2)
    raise RuntimeError(f"{pattern!r} not seen; output: {text[-500:]}")


def ckpts(directory):
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*.index")):
        found.append(int(re.search(r"ckpt-(\d+)\.index$", path).group(1)))
    return sorted(found)


def read_var(prefix, name):
    import tensorflow as tf   # only the parent reads checkpoints, after the child is gone
    return int(tf.train.load_checkpoint(prefix).get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))


class Table:
    def __init__(self):
        self.rows = []

    def add(self, what, faults=0, resumed=0, lost=None, inputs=0, clear=0, tracebacks=0,
            note=""):
        self.rows.append((what, faults, resumed, lost, inputs, clear, tracebacks, note))

    def print(self):
        head = ("fault / input", "faults injected", "resumed correctly", "max iterations lost",
                "bad inputs tried", "clear messages", "tracebacks")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        totals = [0, 0, 0, 0, 0]
        for what, faults, resumed, lost, inputs, clear, tracebacks, note in self.rows:
            cells = [what + (f" ({note})" if note else ""), str(faults or "-"),
                     str(resumed if faults else "-"), "-" if lost is None else str(lost),
                     str(inputs or "-"), str(clear if inputs else "-"), str(tracebacks)]
            print("| " + " | ".join(cells) + " |")
            for i, value in enumerate((faults, resumed, inputs, clear, tracebacks)):
                totals[i] += value
        print(f"| total | {totals[0]} | {totals[1]} | | {totals[2]} | {totals[3]} | "
              f"{totals[4]} |")


# --------------------------------------------------------------------------- kill -9
def sinusoid_kills(work, kills, rng, table):
    logdir = os.path.join(work, "sine_kills")
    directory = os.path.join(logdir, SINE_DIR)
    flags = SINE + [f"--logdir={logdir}", "--metatrain_iterations=10000000"]
    resumed, lost, tracebacks = 0, [], 0
    for k in range(kills):
        before = ckpts(directory)
        process = start(flags)
        text = wait_for(process, "Done initializing")
        restored = re.findall(r"ckpt-(\d+)\n", text)
        expected = before[-1] if before else None
        ok = (restored == [] and expected is None) or (restored and int(restored[-1]) == expected)
        time.sleep(rng.uniform(3.0, 20.0))
        process.kill()
        killed_at = time.time()
        tracebacks += "Traceback" in finish(process)
        last_progress = None
        for when, line in process.lines:
            match = re.search(r"\[(\d+)/\d+ it, ([\d.]+) ms/it", line)
            if match:
                last_progress = (when, int(match.group(1)), float(match.group(2)))
        if last_progress:
            when, done, ms = last_progress
            estimate = done + int((killed_at - when) * 1000.0 / ms)
            newest = ckpts(directory)[-1] if ckpts(directory) else -1
            lost.append(estimate - (newest + 1))
        resumed += bool(ok)
    # the final resume after the last kill
    newest = ckpts(directory)[-1] if ckpts(directory) else -1
    code, out = run(flags[:-1] + [f"--metatrain_iterations={newest + 101}"])
    restored_right = f"ckpt-{newest}\n" in out if newest >= 0 else "Restoring" not in out
    final_ok = code == 0 and restored_right and ckpts(directory)[-1] == newest + 100
    tracebacks += "Traceback" in out
    table.add("sinusoid, kill -9 at random times", kills, resumed - 1 + final_ok,
              f"~{max(lost)} (est.)" if lost else None, tracebacks=tracebacks,
              note="checkpoint every 1000 it.")


def point_kills(work, kills, rng, table):
    logdir = os.path.join(work, "point_kills")
    checkpoints = os.path.join(logdir, "checkpoints")
    flags = POINT + [f"--logdir={logdir}", "--n_itr=100000", "--checkpoint_every=3"]
    resumed, lost, tracebacks = 0, [], 0
    progress = os.path.join(logdir, "progress.csv")

    def rows():
        return sum(1 for _ in open(progress)) - 1 if os.path.exists(progress) else 0

    for k in range(kills):
        before = ckpts(checkpoints)
        process = start(flags)
        wait_for(process, "| return pre")     # the first iteration of this start is done
        time.sleep(rng.uniform(0.0, 8.0))
        process.kill()
        out = finish(process)
        tracebacks += "Traceback" in out
        restored = re.findall(r"resumed from \S+ at iteration (\d+)", out)
        resumed += (restored == [] and not before) or (
            bool(restored) and int(restored[0]) == before[-1])
        lost.append(rows() - ckpts(checkpoints)[-1])
    newest = ckpts(checkpoints)[-1]
    code, out = run(flags[:-2] + [f"--n_itr={newest + 2}"])
    tracebacks += "Traceback" in out
    iterations = [int(line.split(",")[0]) for line in open(progress).readlines()[1:]]
    duplicates = len(iterations) - len(set(iterations))
    final_ok = (code == 0 and f"at iteration {newest} " in out
                and iterations == list(range(newest + 2)))
    table.add("point robot, kill -9 at random times", kills, resumed - 1 + final_ok, max(lost),
              tracebacks=tracebacks,
              note=f"checkpoint every 3 it.; {duplicates} duplicate progress.csv rows after")


# --------------------------------------------------------------------------- signals
def signals(work, table):
    ok, tracebacks, cases = 0, 0, [("SIGINT", [signal.SIGINT], 130),
                                   ("SIGINT twice", [signal.SIGINT, signal.SIGINT], 130),
                                   ("SIGTERM", [signal.SIGTERM], 143)]
    for name, sent, status in cases:
        logdir = os.path.join(work, "signal_" + name.replace(" ", "_"))
        process = start(SINE + [f"--logdir={logdir}", "--metatrain_iterations=10000000"])
        wait_for(process, "Done initializing")
        time.sleep(4)
        for signum in sent:
            process.send_signal(signum)
        out = finish(process)
        tracebacks += "Traceback" in out
        match = re.search(r"Stopped by \w+ after iteration (\d+): saved (\S+);", out)
        if process.returncode == status and match:
            prefix = match.group(2)
            itr = int(match.group(1))
            ok += (read_var(prefix, "iteration") == itr
                   and read_var(prefix, "optimizer/_iterations") == itr + 1)
    # background RL run (SIGINT ignored by the shell) stopped with SIGINT
    logdir = os.path.join(work, "signal_rl")
    process = start(POINT + [f"--logdir={logdir}", "--n_itr=100000"],
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for(process, "| return pre")
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out = finish(process)
    tracebacks += "Traceback" in out
    rows = sum(1 for _ in open(os.path.join(logdir, "progress.csv"))) - 1
    ok += process.returncode == 130 and ckpts(os.path.join(logdir, "checkpoints"))[-1] == rows
    table.add("SIGINT, SIGINT x2, SIGTERM; RL in the background: SIGINT", 4, ok, 0,
              tracebacks=tracebacks, note="saved checkpoint = its name's iterations")


# --------------------------------------------------------------------------- damage
def damaged_checkpoints(work, table):
    base = os.path.join(work, "damage_base")
    code, out = run(SINE + [f"--logdir={base}", "--metatrain_iterations=1500"])
    assert code == 0, out
    kinds = ["empty index", "truncated index", "truncated data", "flipped data bytes",
             "missing data", "missing state file", "garbled state file"]
    resumed, tracebacks = 0, 0
    for how in kinds:
        logdir = os.path.join(work, "damage_" + how.replace(" ", "_"))
        shutil.copytree(base, logdir)
        directory = os.path.join(logdir, SINE_DIR)
        damage_checkpoint(os.path.join(directory, "ckpt-1499"), how)
        expected = 1000 if "state" not in how else 1499
        code_t, out_t = run(SINE + [f"--logdir={logdir}", "--train=False",
                                    "--num_test_tasks=20"])
        code_r, out_r = run(SINE + [f"--logdir={logdir}", "--metatrain_iterations=1510"])
        tracebacks += ("Traceback" in out_t) + ("Traceback" in out_r)
        warned = "state" in how or ("ckpt-1499 is damaged" in out_t
                                    and "ckpt-1499 is damaged" in out_r)
        resumed += (code_t == 0 and code_r == 0 and warned
                    and f"ckpt-{expected}\n" in out_t and f"ckpt-{expected}\n" in out_r)
    table.add("damaged newest checkpoint / state file (test + resume)", len(kinds), resumed,
              1499 - 1000, tracebacks=tracebacks, note=", ".join(kinds))


def disk_full(work, table):
    logdir = os.path.join(work, "disk_full")
    directory = os.path.join(logdir, SINE_DIR)
    code, out = run(SINE + [f"--logdir={logdir}", "--metatrain_iterations=1200", "--log=False"])
    size = max(os.path.getsize(p) for p in glob.glob(os.path.join(directory, "ckpt-*")))

    def limit():   # files may not grow past half a checkpoint: the next save fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    code, out = run(SINE + [f"--logdir={logdir}", "--metatrain_iterations=2500", "--log=False"],
                    preexec_fn=limit)
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    clear = (code == 2 and len(lines) == 1 and "could not write checkpoint" in lines[0]
             and "ckpt-1199 is kept" in lines[0])
    intact = ckpts(directory) == [1000, 1199] and not glob.glob(os.path.join(directory,
                                                                            "*_temp*"))
    code2, out2 = run(SINE + [f"--logdir={logdir}", "--metatrain_iterations=1210",
                              "--log=False"])
    table.add("write failure (file size limit) during a checkpoint save", 1,
              int(clear and intact and code2 == 0 and "ckpt-1199\n" in out2), None,
              tracebacks=int("Traceback" in out), note=lines[0][:60] + "..." if lines else "")


# --------------------------------------------------------------------------- bad inputs
def bad_inputs(work, table):
    done = os.path.join(work, "bad_base")
    run(SINE + [f"--logdir={done}", "--metatrain_iterations=200"])
    point = os.path.join(work, "bad_point")
    run(POINT + [f"--logdir={point}", "--n_itr=1"])
    a_file = os.path.join(work, "a_file")
    open(a_file, "w").write("x")
    other = os.path.join(work, "not_a_model")
    os.makedirs(other, exist_ok=True)
    open(os.path.join(other, "notes.txt"), "w").write("mine")
    locked = os.path.join(work, "locked")
    holder = start(SINE + [f"--logdir={locked}", "--metatrain_iterations=10000000"])
    wait_for(holder, "Done initializing")
    cases = [
        (SINE + ["--meta_lr=inf"], "--meta_lr"),
        (SINE + ["--meta_lr=nan"], "--meta_lr"),
        (SINE + ["--update_lr=-1"], "--update_lr"),
        (SINE + ["--checkpoint_minutes=-1"], "--checkpoint_minutes"),
        (SINE + ["--checkpoint_interval=0"], "--checkpoint_interval"),
        (SINE + ["--logdir=/proc/forbidden"], "--logdir"),
        (SINE + [f"--logdir={done}", f"--export_dir={a_file}"], "--export_dir"),
        (SINE + [f"--logdir={done}", f"--export_dir={other}"], "--export_dir"),
        (SINE + [f"--logdir={done}", "--resume=False"], "--overwrite"),
        (SINE + [f"--logdir={done}", "--train=False", "--test_iter=12345"], "iteration 12345"),
        (SINE + [f"--logdir={work}/empty", "--train=False"], "no checkpoint to test"),
        (SINE + [f"--logdir={locked}"], "in use by another training process"),
        (SINE + [f"--logdir={work}/diverge", "--meta_lr=1e6", "--metatrain_iterations=2000"],
         "not finite"),
        (POINT + ["--fast_lr=inf"], "--fast_lr"),
        (POINT + ["--step_size=nan"], "--step_size"),
        (POINT + ["--logdir=/proc/forbidden"], "--logdir"),
        (POINT + [f"--logdir={point}", "--mode=test", "--test_checkpoint=99"], "iteration 99"),
        (POINT + [f"--logdir={point}", "--resume=False"], "--overwrite"),
        (POINT + [f"--logdir={point}", "--hidden_sizes=8"], "--hidden_sizes"),
        (POINT + [f"--logdir={point}", "--mode=export", f"--export_dir={a_file}"],
         "--export_dir"),
    ]
    clear, tracebacks, failures = 0, 0, []
    for args, expected in cases:
        code, out = run(args)
        tracebacks += "Traceback" in out
        good = code != 0 and expected in out and "Traceback" not in out
        clear += good
        if not good:
            failures.append(" ".join(args[-2:]))
    holder.kill()
    finish(holder)
    table.add("bad flags, paths and misuse (supervised and RL)", inputs=len(cases),
              clear=clear, tracebacks=tracebacks,
              note=("not clear: " + "; ".join(failures)) if failures else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="kill -9s per training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="maml_faults_")
    rng = random.Random(args.seed)
    table = Table()
    started = time.time()
    for step in (lambda: sinusoid_kills(work, args.kills, rng, table),
                 lambda: point_kills(work, args.kills, rng, table),
                 lambda: signals(work, table), lambda: damaged_checkpoints(work, table),
                 lambda: disk_full(work, table), lambda: bad_inputs(work, table)):
        try:
            step()
        except Exception as error:   # noqa: BLE001 -- the table still gets printed
            table.add(f"SCRIPT ERROR in a step: {type(error).__name__}: {error}"[:200])
        print(f"[{time.time() - started:.0f} s] {table.rows[-1][0]} done", file=sys.stderr,
              flush=True)
    table.print()
    print(f"\n{time.time() - started:.0f} s wall; work folder {work}")


if __name__ == "__main__":
    main()
