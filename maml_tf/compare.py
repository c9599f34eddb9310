"""Our test results beside the paper's numbers, and the figures of the paper's comparisons.

    .venv/bin/python -m maml_tf.compare --logroot=logs [--plot_dir=docs/figures]
    .venv/bin/python -m maml_tf.compare --logroot=logs --tables=sinusoid --seeds=0,1,2

Reads the test results that ``run.sh`` test entries write (``<logroot>/<run>/<experiment>/
test_ubs{K}_stepsize{alpha}.csv`` and ``.pkl``) and ``docs/paper_numbers.json``; prints
markdown tables. The sinusoid table (:mod:`maml_tf.sinusoid_compare`) lists only what was
tested; the classification table keeps a row per Table 1 configuration, ``-`` where a run
was not done (never invented). ``./run.sh sinusoid_experiment`` shows the sinusoid table only.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
from typing import Optional

from maml_tf import sinusoid_compare
from maml_tf.evaluation import read_results, tested_iteration

DEFAULT_PAPER_NUMBERS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs",
                                     "paper_numbers.json")
TABLES = ("sinusoid", "classification")


def load_paper_numbers(path: str = DEFAULT_PAPER_NUMBERS) -> dict:
    with open(path) as f:
        return json.load(f)


def _fmt(value: Optional[float], digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _at(results: Optional[dict], step: int, key="means") -> Optional[float]:
    if results is None or step >= len(results[key]):
        return None
    return results[key][step]


def _classification_runs():
    """(label, run.sh log folder, config, paper key) for every Table 1 line in run.sh."""
    from maml_tf.config import ExperimentConfig

    omni = dict(datasource="omniglot", metatrain_iterations=60000, num_updates=1)
    mini = dict(datasource="miniimagenet", meta_batch_size=4, update_lr=0.01, num_updates=5,
                num_filters=32, max_pool=True)
    runs = []
    for k in (1, 5):
        runs.append((f"Omniglot 5-way {k}-shot", "omniglot5way", ExperimentConfig(
            **omni, meta_batch_size=32, update_batch_size=k, update_lr=0.4),
            ("omniglot", "maml_conv", f"5way_{k}shot")))
    for k in (1, 5):
        runs.append((f"Omniglot 20-way {k}-shot", "omniglot20way", ExperimentConfig(
            **dict(omni, num_updates=5), meta_batch_size=16, update_batch_size=k,
            num_classes=20, update_lr=0.1), ("omniglot", "maml_conv", f"20way_{k}shot")))
    for k in (1, 5):
        runs.append((f"Omniglot 5-way {k}-shot, no conv", "omniglot5way_noconv",
                     ExperimentConfig(**omni, meta_batch_size=32, update_batch_size=k,
                                      update_lr=0.4, conv=False),
                     ("omniglot", "maml_no_conv", f"5way_{k}shot")))
    for first_order in (False, True):
        for k in (1, 5):
            runs.append((f"MiniImagenet 5-way {k}-shot{', first order' if first_order else ''}",
                         f"miniimagenet{k}shot",
                         ExperimentConfig(**mini, update_batch_size=k, stop_grad=first_order),
                         ("miniimagenet", "maml_first_order" if first_order else "maml",
                          f"5way_{k}shot")))
    return runs


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
    for label, folder, cfg, key in _classification_runs():
        cfg.logdir = os.path.join(logroot, folder)
        reference = paper[key[0]][key[1]][key[2]]
        paper_cell = f"{reference[0]} +- {reference[1]}"
        csv_path = os.path.join(cfg.experiment_dir, f"test_ubs{cfg.update_batch_size}_"
                                f"stepsize{cfg.update_lr}.csv")
        iterations = _trained_iterations(cfg.experiment_dir)
        if not os.path.exists(csv_path):
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
    for label, folder, cfg, key in _classification_runs():
        cfg.logdir = os.path.join(logroot, folder)
        reference = paper[key[0]][key[1]][key[2]]
        csv_path = os.path.join(cfg.experiment_dir, f"test_ubs{cfg.update_batch_size}_"
                                f"stepsize{cfg.update_lr}.csv")
        res = read_results(csv_path) if os.path.exists(csv_path) else None
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


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return seeds


def _tables(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in TABLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown table(s) {unknown or text!r}; choose from "
                                         f"{', '.join(TABLES)}")
    return names


def _runs(text: str) -> tuple:
    known = {run.folder: run for run in sinusoid_compare.RUNS}
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown sinusoid run(s) {unknown or text!r}; choose "
                                         f"from {', '.join(known)}")
    return tuple(known[name] for name in names)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Our results beside the paper's.")
    parser.add_argument("--logroot", default="logs", help="root of the run.sh log folders")
    parser.add_argument("--paper_numbers", default=DEFAULT_PAPER_NUMBERS,
                        help="the paper's numbers (JSON)")
    parser.add_argument("--plot_dir", default="", help="if set, write figures (PNG) here")
    parser.add_argument("--tables", type=_tables, default=list(TABLES),
                        help=f"comma-separated subset of {','.join(TABLES)} (default: all)")
    parser.add_argument("--runs", type=_runs, default=sinusoid_compare.RUNS,
                        help="sinusoid: comma-separated run.sh log folders to show (default: "
                             "all of " + ",".join(r.folder for r in sinusoid_compare.RUNS) + ")")
    parser.add_argument("--seeds", type=_seeds, default=None,
                        help="sinusoid: summarise the folders <run>_seed<N> over these seeds "
                             "(mean and [min, max] per cell) instead of the <run> folders")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.logroot):
        parser.error(f"--logroot={args.logroot!r} is not a folder")
    if not os.path.isfile(args.paper_numbers):
        parser.error(f"--paper_numbers={args.paper_numbers!r} is not a file")
    paper = load_paper_numbers(args.paper_numbers)
    written = []
    if "sinusoid" in args.tables:
        if args.seeds:
            print(sinusoid_compare.seed_table(args.logroot, paper, args.seeds, args.runs))
        else:
            print(sinusoid_compare.sinusoid_table(args.logroot, paper, args.runs))
            if args.plot_dir:
                path = sinusoid_compare.plot_mse_vs_steps(args.logroot, paper, args.plot_dir,
                                                          args.runs)
                if path:
                    written.append(("Figure 3 (MSE against gradient steps)", path))
    if "classification" in args.tables:
        if "sinusoid" in args.tables:
            print()
        print(classification_table(args.logroot, paper))
        if args.plot_dir:
            written += [("Table 1 (bar chart)", path)
                        for path in plot_classification(args.logroot, paper, args.plot_dir)]
    if written:
        print()
    for what, path in written:
        print(f"{what}: {path}")


if __name__ == "__main__":
    main()
