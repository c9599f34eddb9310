"""Our test results beside the paper's numbers, and plots of the paper's sinusoid figures.

    .venv/bin/python -m maml_tf.compare --logroot=logs [--plot_dir=docs/figures]

Reads the test CSVs that ``run.sh`` test entries write (``<logroot>/<run>/<experiment>/
test_ubs{K}_stepsize{alpha}.csv``) and ``docs/paper_numbers.json``. Prints markdown tables;
missing results are shown as ``-`` (a run not yet done), never invented.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
from typing import Optional

from maml_tf.evaluation import read_results, tested_iteration

DEFAULT_PAPER_NUMBERS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs",
                                     "paper_numbers.json")
# run.sh log folders of the sinusoid runs, how the tables name them, and the step size each
# was trained (and by default tested) with.
SINUSOID_RUNS = {
    "sine": ("MAML (alpha 0.01, paper)", 0.01),
    "sine_lr0.001": ("MAML (alpha 0.001, original code)", 0.001),
    "sine_pretrained": ("pretrained, fine-tuned", 0.01),
    "sine_oracle": ("oracle", 0.01),
}


def load_paper_numbers(path: str = DEFAULT_PAPER_NUMBERS) -> dict:
    with open(path) as f:
        return json.load(f)


def find_test_results(run_dir: str, update_batch_size: int) -> dict[float, dict]:
    """{step size: results} for every ``test_ubs{K}_stepsize*.csv`` below ``run_dir``."""
    found = {}
    for path in glob.glob(os.path.join(run_dir, "*", f"test_ubs{update_batch_size}_stepsize*.csv")):
        match = re.search(r"_stepsize([0-9.e-]+)\.csv$", path)
        if match:
            found[float(match.group(1))] = dict(read_results(path), path=path)
    return found


def _fmt(value: Optional[float], digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _at(results: Optional[dict], step: int, key="means") -> Optional[float]:
    if results is None or step >= len(results[key]):
        return None
    return results[key][step]


DIVERGED_MSE = 100.0


def diverged_tasks(results: dict) -> str:
    """'n / N (median m)' from the raw per-task values next to the CSV."""
    import pickle

    import numpy as np

    pkl = results["path"][:-4] + ".pkl"
    if not os.path.exists(pkl):
        return "-"
    with open(pkl, "rb") as f:
        values = np.asarray(pickle.load(f)["mses"])
    last = values[:, -1]
    bad = int(np.sum(~np.isfinite(last) | (last > DIVERGED_MSE)))
    median = np.median(np.where(np.isnan(last), np.inf, last))  # NaN counts as diverged
    return f"{bad} / {len(last)} (median {median:.2f})"


def sinusoid_tables(logroot: str, paper: dict) -> str:
    """Table 2 (5-shot MSE after 1/5/10 steps) and the K = 5/10/20 curves, ours vs paper."""
    table2 = paper["sinusoid"]["table2_5shot_mse_by_grad_steps"]
    paper_rows = {"sine": table2["maml"], "sine_lr0.001": table2["maml"],
                  "sine_pretrained": table2["pretrain_on_all_tasks"]}
    lines = ["### Sinusoid, 5-shot MSE (paper Table 2): ours (paper)", "",
             "| method | test step size | 1 step | 5 steps | 10 steps | 95% CI after 10 | "
             "diverged tasks* |",
             "|---|---|---|---|---|---|---|"]
    for run, (label, _) in SINUSOID_RUNS.items():
        if run == "sine_oracle":
            continue  # not in Table 2; the oracle is not fine-tuned (see the next table)
        found = find_test_results(os.path.join(logroot, run), 5)
        if not found:
            lines.append(f"| {label} | - | - | - | - | - | - |")
            continue
        for step_size in sorted(found):
            res = found[step_size]
            ref = paper_rows.get(run, [None] * 3)
            cells = [f"{_fmt(_at(res, s))} ({_fmt(r)})" if r is not None else _fmt(_at(res, s))
                     for s, r in zip((1, 5, 10), ref)]
            lines.append(f"| {label} | {step_size} | " + " | ".join(cells)
                         + f" | {_fmt(_at(res, 10, 'ci95'), 3)} | {diverged_tasks(res)} |")
    lines += ["", f"*tasks (of the test set) whose MSE after 10 steps is above "
              f"{DIVERGED_MSE} or not finite; the median MSE after 10 steps is given with it."]
    fig3 = paper["sinusoid"]["figure3_10shot_mse_approx"]
    lines += ["", "### Sinusoid MSE against gradient steps (paper Figures 3 and 6)", "",
              "Paper, 10-shot, read off Figure 3 (approximate): MAML "
              f"{fig3['maml_step0']} before, {fig3['maml_step1']} after 1 step, "
              f"{fig3['maml_step9']} after 9; pretrained {fig3['pretrained_step9']} after 9; "
              f"oracle {fig3['oracle']}. The oracle is not fine-tuned (its inputs already "
              "hold amplitude and phase): only its step-0 value is meaningful.", "",
              "| method | K | step size | 0 | 1 | 2 | 5 | 10 |", "|---|---|---|---|---|---|---|---|"]
    for run, (label, step_size) in SINUSOID_RUNS.items():
        for k in (5, 10, 20):
            res = find_test_results(os.path.join(logroot, run), k).get(step_size)
            if res is None:
                continue
            cells = [_fmt(_at(res, s)) if s == 0 or run != "sine_oracle" else "n/a"
                     for s in (0, 1, 2, 5, 10)]
            lines.append(f"| {label} | {k} | {step_size} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def plot_sinusoid_curves(logroot: str, plot_dir: str) -> list[str]:
    """Figure 6 style: MSE against gradient steps for K = 5, 10, 20 (with 95% CIs)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, k in zip(axes, (5, 10, 20)):
        for run, (label, step_size) in SINUSOID_RUNS.items():
            res = find_test_results(os.path.join(logroot, run), k).get(step_size)
            if res is None:
                continue
            steps = list(range(len(res["means"])))
            if run == "sine_oracle":
                ax.axhline(res["means"][0], ls="--", color="k", label=label)
                continue
            ax.errorbar(steps, res["means"], yerr=res["ci95"], marker="o", ms=3, capsize=2,
                        label=label)
        ax.set_title(f"k-shot regression, k={k}")
        ax.set_xlabel("number of gradient steps")
        ax.set_ylabel("mean squared error")
        ax.set_yscale("log")
        ax.set_ylim(2e-3, 10)  # diverging tasks (alpha 0.01, K=5) go off the top
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
            break
    fig.tight_layout()
    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, "sinusoid_mse_vs_steps.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description="Our results beside the paper's.")
    parser.add_argument("--logroot", default="logs", help="root of the run.sh log folders")
    parser.add_argument("--paper_numbers", default=DEFAULT_PAPER_NUMBERS,
                        help="the paper's numbers (JSON)")
    parser.add_argument("--plot_dir", default="", help="if set, write figures (PNG) here")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.logroot):
        parser.error(f"--logroot={args.logroot!r} is not a folder")
    paper = load_paper_numbers(args.paper_numbers)
    print(sinusoid_tables(args.logroot, paper))
    print()
    print(classification_table(args.logroot, paper))
    if args.plot_dir:
        for path in (plot_sinusoid_curves(args.logroot, args.plot_dir)
                     + plot_classification(args.logroot, paper, args.plot_dir)):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
