"""Test mode of the original (``--train=False``): 600 tasks, means, stds, 95% CIs, CSV + pkl.

Column 0 (``update0``) is the value on the support set before adaptation; column j the value
on the query set after j inner steps. Values are accuracies for classification and mean
squared errors for regression. Tasks are evaluated in chunks for speed (``batch_size``);
tasks never interact (batch norm statistics are per task), but see :func:`evaluate_tasks` on
what the chunk size changes for classification.
"""
from __future__ import annotations

import csv
import os
import pickle
import re
from typing import Callable, Optional

import numpy as np


def summarize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, standard deviations and 95% confidence intervals (1.96 std / sqrt(n)).

    A diverged task (alpha 0.01 on some 5-shot sinusoids) makes these inf or nan, which is
    what the original's CSV held too; numpy's overflow warnings are silenced because the
    comparison reports such tasks separately (count and median)."""
    with np.errstate(over="ignore", invalid="ignore"):
        means = np.mean(values, axis=0)
        stds = np.std(values, axis=0)
    ci95 = 1.96 * stds / np.sqrt(values.shape[0])
    return means, stds, ci95


def result_basename(update_batch_size: int, update_lr: float, test_seed: int = -1) -> str:
    """The original's ``test_ubs{K}_stepsize{alpha}``; ``_testseed{N}`` is appended for a
    ``--test_seed`` other than the original's (-1), so tests of other task sets never
    overwrite the original-protocol result that compare reads."""
    base = f"test_ubs{update_batch_size}_stepsize{update_lr}"
    return base if test_seed < 0 else f"{base}_testseed{test_seed}"


_RESULT_NAME = re.compile(r"test_ubs(\d+)_stepsize([0-9.e+-]+?)(?:_testseed(\d+))?$")


def parse_result_basename(name: str) -> Optional[tuple[int, float, int]]:
    """(update_batch_size, update_lr, test_seed) of a name :func:`result_basename` built (a
    trailing ``.csv`` / ``.pkl`` is ignored), test_seed -1 for the original's; None for any
    other name. Kept beside the builder so that the two cannot drift apart."""
    stem = re.sub(r"\.(csv|pkl)$", "", os.path.basename(name))
    match = _RESULT_NAME.fullmatch(stem)
    if not match:
        return None
    try:
        update_lr = float(match.group(2))
    except ValueError:
        return None
    seed = -1 if match.group(3) is None else int(match.group(3))
    return int(match.group(1)), update_lr, seed


def evaluate_tasks(learner, sample: Callable[[int], tuple], num_tasks: int, num_steps: int,
                   classification: bool, batch_size: int = 50) -> np.ndarray:
    """Per-task values [num_tasks, num_steps + 1] for ``num_tasks`` tasks from ``sample(n)``.

    Tasks are drawn in chunks of ``batch_size`` (the last one shorter), and every call of
    ``learner.evaluate`` gets ``batch_size`` tasks: a short last chunk is padded with copies
    of its own last task, whose rows are dropped. So the evaluation graph is traced once; a
    second trace of a 50-task, 10-step conv graph cost minutes. Padding draws nothing, so the
    values are those of unpadded chunks. (The chunk size itself is not neutral for
    classification: each drawn chunk shuffles its tasks' label order and Omniglot rotations
    from one random stream, so results are comparable only at the same ``batch_size``.)
    """
    key = "accuracies" if classification else "losses"
    chunk = min(batch_size, num_tasks)
    rows = []
    remaining = num_tasks
    while remaining > 0:
        n = min(chunk, remaining)
        rows.append(learner.evaluate(pad_tasks(sample(n), chunk), num_steps)[key][:n])
        remaining -= n
    return np.concatenate(rows, axis=0)


def pad_tasks(batch: tuple, size: int) -> tuple:
    """``batch``'s arrays (tasks first) grown to ``size`` tasks by repeating the last task
    (test mode's short last chunk; a distributed batch that does not split evenly). Tasks
    never interact, so the first rows of any result are those of the unpadded batch."""
    n = len(batch[0])
    if n == size:
        return batch
    padded = [None if a is None else np.concatenate(
        [a, np.repeat(np.asarray(a)[-1:], size - n, axis=0)]) for a in batch]
    return type(batch)(*padded) if hasattr(batch, "_fields") else tuple(padded)


def write_results(values: np.ndarray, directory: str, update_batch_size: int,
                  update_lr: float, log=print, iteration: int | None = None,
                  test_seed: int = -1) -> tuple[str, str]:
    """Prints and writes the CSV (header, means, stds, ci95) and the raw per-task pickle.

    The pickle also records ``iteration``, the checkpoint that was tested, so a result is
    never attributed to a later checkpoint of a run that kept training, and ``test_seed``.
    """
    means, stds, ci95 = summarize(values)
    log("Mean validation accuracy/loss, stddev, and confidence intervals")
    log(str((means, stds, ci95)))
    base = os.path.join(directory, result_basename(update_batch_size, update_lr, test_seed))
    os.makedirs(directory, exist_ok=True)
    with open(base + ".pkl", "wb") as f:
        # "mses" is the original's key (also for accuracies).
        pickle.dump({"mses": values, "iteration": iteration, "test_seed": test_seed}, f)
    with open(base + ".csv", "w", newline="") as f:
        writer = csv.writer(f, delimiter=",")
        writer.writerow([f"update{i}" for i in range(len(means))])
        writer.writerow(means)
        writer.writerow(stds)
        writer.writerow(ci95)
    return base + ".csv", base + ".pkl"


def tested_iteration(csv_path: str) -> int | None:
    """The checkpoint iteration recorded next to a test CSV (None if unknown)."""
    pkl = csv_path[:-4] + ".pkl"
    if not os.path.exists(pkl):
        return None
    with open(pkl, "rb") as f:
        return pickle.load(f).get("iteration")


def read_results(csv_path: str) -> dict:
    """Reads a test CSV back: {'means': [...], 'stds': [...], 'ci95': [...]}."""
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) != 4:
        raise ValueError(f"{csv_path}: expected 4 rows (header, means, stds, ci95), "
                         f"found {len(rows)}")
    return {name: [float(v) for v in row]
            for name, row in zip(("means", "stds", "ci95"), rows[1:])}
