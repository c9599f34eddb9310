"""Our test results beside the paper's numbers, and the figures of the paper's comparisons.

    .venv/bin/python -m maml_tf.compare --logroot=logs [--plot_dir=docs/figures]
    .venv/bin/python -m maml_tf.compare --logroot=logs --tables=sinusoid --seeds=0,1,2

The command line of :mod:`maml_tf.reporting`: reads the test results the presets' test entries
write (``<logroot>/<preset folder>/<experiment>/test_ubs{K}_stepsize{alpha}.csv`` and ``.pkl``)
and ``docs/paper_numbers.json``; prints markdown tables. Each preset's run is found by its
record (``config.json``) under the log root, wherever its folder is, else in the preset's own
folder (:mod:`maml_tf.reporting.runs`). The sinusoid table lists only what was
tested; the classification table keeps a row per Table 1 configuration, ``-`` where a run was
not done. ``./run.sh sinusoid_experiment`` shows the sinusoid table only.
"""
from __future__ import annotations

import argparse
import os

from maml_tf.reporting import sinusoid as sinusoid_compare
from maml_tf.reporting.sinusoid_figure import plot_mse_vs_steps
from maml_tf.reporting.classification import classification_table, plot_classification
from maml_tf.reporting.paper import DEFAULT_PAPER_NUMBERS, load_paper_numbers

TABLES = ("sinusoid", "classification")


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
                        help="sinusoid: summarise each run's seed-N runs over these seeds "
                             "(mean and [min, max] per cell): found by their records, else in "
                             "the folders <run>_seed<N>")
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
                path = plot_mse_vs_steps(args.logroot, paper, args.plot_dir, args.runs)
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
