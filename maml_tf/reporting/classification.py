"""Table 1 (few-shot classification): our 600-task test results beside the paper's.

Every Table 1 preset of the registry (flags/experiments.py) has a row, from the run whose
record (``config.json``) names the preset or has its settings, wherever it is under the log
root (:mod:`maml_tf.reporting.runs`); the preset's own folder for runs from before records;
``-`` where a run was not done (never invented).
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Optional

from flags import experiments
from maml_tf.evaluation import read_results, result_basename, tested_iteration
from maml_tf.reporting.paper import lookup
from maml_tf.reporting.runs import find_preset_run, preset_config, recorded_runs


def _at(results: Optional[dict], step: int, key="means") -> Optional[float]:
    if results is None or step >= len(results[key]):
        return None
    return results[key][step]


def classification_runs(logroot: str) -> list:
    """(preset, its ExperimentConfig with the preset's log folder under ``logroot``) for every
    Table 1 preset of the registry, in the registry's (the table's) order."""
    return [(preset, preset_config(preset, preset.logdir(logroot)))
            for preset in experiments.EXPERIMENTS.values()
            if preset.kind == "supervised" and preset.paper == "Table 1"]


def result_csv(cfg, run_dir: Optional[str] = None) -> str:
    """Where test mode writes the original-protocol result of ``cfg`` (evaluation's name), in
    ``run_dir`` (default: the experiment directory the flags name)."""
    return os.path.join(run_dir or cfg.experiment_dir,
                        result_basename(cfg.update_batch_size, cfg.update_lr) + ".csv")


@dataclasses.dataclass
class Row:
    """One Table 1 row: the preset, the configuration its result is read with (the run
    record's where there is one), the result file (None: no run found) and notes.

    Example:
        >>> import os, tempfile
        >>> from maml_tf.reporting.classification import table1_rows
        >>> rows = {row.preset.name: row for row in table1_rows(tempfile.mkdtemp())}
        >>> row = rows["omniglot_5way_1shot"]            # an empty log root: nothing trained
        >>> row.cfg.update_batch_size, row.cfg.update_lr, row.notes
        (1, 0.4, [])
        >>> os.path.basename(row.csv_path), os.path.exists(row.csv_path)
        ('test_ubs1_stepsize0.4.csv', False)
    """

    preset: object
    cfg: object
    csv_path: Optional[str]
    run_dir: Optional[str]
    notes: list


def table1_rows(logroot: str) -> list:
    """A :class:`Row` per Table 1 preset, its run found by the run records under ``logroot``
    (a moved or renamed run folder is still found) or, for runs from before records, in the
    preset's own folder."""
    records = recorded_runs(logroot) if os.path.isdir(logroot) else []
    rows = []
    for preset, cfg in classification_runs(logroot):
        expected = dataclasses.asdict(cfg)

        def tested(run_dir, config):
            return os.path.exists(result_csv(_with(cfg, config), run_dir))

        found = find_preset_run(logroot, preset.name, expected, cfg.experiment_dir, tested,
                                records)
        run_cfg = _with(cfg, found.config)
        csv_path = result_csv(run_cfg, found.run_dir) if found.run_dir else None
        rows.append(Row(preset, run_cfg, csv_path, found.run_dir, found.notes))
    return rows


def _with(cfg, config: Optional[dict]):
    """``cfg`` with the recorded values of the fields the result's name and columns use."""
    if not config:
        return cfg
    return dataclasses.replace(cfg, **{k: config[k] for k in (
        "update_batch_size", "update_lr", "num_updates") if k in config})


def _trained_iterations(experiment_dir: str) -> Optional[int]:
    found = [int(m.group(1)) for m in (re.search(r"ckpt-(\d+)\.index$", p)
                                       for p in glob.glob(os.path.join(experiment_dir, "ckpt-*")))
             if m]
    return max(found) + 1 if found else None


def classification_table(logroot: str, paper: dict) -> str:
    """Table 1: accuracy (%) after num_updates and after 10 steps, ours vs the paper's."""
    lines = ["### Few-shot classification (paper Table 1): accuracy %, 600 test tasks", "",
             "| configuration | tested after iterations | after num_updates steps | "
             "after 10 steps | paper |", "|---|---|---|---|---|"]
    notes = []
    for row in table1_rows(logroot):
        preset, cfg, csv_path = row.preset, row.cfg, row.csv_path
        notes += row.notes
        label = preset.label
        reference = lookup(paper, preset.paper_key)
        paper_cell = f"{reference[0]} +- {reference[1]}"
        iterations = _trained_iterations(row.run_dir) if row.run_dir else None
        if csv_path is None or not os.path.exists(csv_path):
            trained = f"(trained {iterations}, not tested)" if iterations else "-"
            lines.append(f"| {label} | {trained} | - | - | {paper_cell} |")
            continue
        res = read_results(csv_path)
        tested = tested_iteration(csv_path)
        if tested is not None:
            iterations = tested + 1
        cells = [f"{100 * _at(res, s):.1f} +- {100 * _at(res, s, 'ci95'):.1f}"
                 if _at(res, s) is not None else "-" for s in (cfg.num_updates, 10)]
        lines.append(f"| {label} | {iterations or '-'} | {cells[0]} | {cells[1]} | "
                     f"{paper_cell} |")
    prior = paper["omniglot"]["prior_methods"]
    if notes:
        lines += [""] + [f"Note: {note}" for note in notes]
    lines += ["", "Prior methods in the paper's Table 1 (Omniglot, %): " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v}" for k, v in values.items())
        for name, values in prior.items()) + ".",
        "MiniImagenet baselines (%): " + "; ".join(
            f"{name} {v['5way_1shot'][0]} / {v['5way_5shot'][0]}"
            for name, v in paper["miniimagenet"]["baselines"].items()) + " (1-shot / 5-shot)."]
    return "\n".join(lines)


def plot_classification(logroot: str, paper: dict, plot_dir: str) -> list[str]:
    """Table 1 as a bar chart: our accuracy after 10 steps (95% CI) beside the paper's.

    First-order and second-order MiniImagenet bars stand side by side, which is the paper's
    first-order comparison. Configurations without a test result are drawn as paper-only.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, ours, ours_ci, theirs, theirs_ci = [], [], [], [], []
    for row in table1_rows(logroot):
        label = row.preset.label
        reference = lookup(paper, row.preset.paper_key)
        res = read_results(row.csv_path) if row.csv_path and os.path.exists(row.csv_path) \
            else None
        labels.append(label.replace(" ", "\n", 1).replace(", ", "\n"))
        ours.append(100 * _at(res, 10) if res else np.nan)
        ours_ci.append(100 * _at(res, 10, "ci95") if res else 0)
        theirs.append(reference[0])
        theirs_ci.append(reference[1])
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(13, 4.2))
    ax.bar(x - 0.2, theirs, 0.4, yerr=theirs_ci, label="paper", color="tab:gray", capsize=2)
    ax.bar(x + 0.2, ours, 0.4, yerr=ours_ci, label="ours (after 10 steps)", color="tab:blue",
           capsize=2)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("accuracy, % (95% CI)")
    ax.set_ylim(0, 100)
    ax.set_title("Few-shot classification (Table 1); missing blue bar = not yet trained/tested")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, "classification_table1.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
