"""Prints test-protocol results beside the paper's and plots Figures 4/5 of section 5.3.

    python -m rl.compare --results=logs/rl/point_maml/test_maml.pkl,logs/rl/point_pretrained/\
test_pretrained.pkl --plot=docs/rl_point.png
    python -m rl.compare --plot=seeds.png --results="released mix=logs/rl/cheetah_dir_maml_\
seed1/test_maml.pkl,released mix=logs/rl/cheetah_dir_maml_seed2/test_maml.pkl"

The command line of :mod:`maml_tf.reporting.rl` (tables and figures); paper numbers come from
docs/paper_numbers.json (key ``rl_average_return``). For the point robot the plot also shows
paths before and after adaptation (``<plot>`` with ``_trajectories`` appended), as the paper's
Figure 4. For the forward/backward tasks a second table gives the means over the backward and
the forward goals, ours and the paper's. A small stand-alone tool with argparse: only
rl/main.py reads absl flags.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from maml_tf.reporting.paper import DEFAULT_PAPER_NUMBERS, load_paper_numbers
from maml_tf.reporting.rl import (comparison_table, direction_table, group_table,
                                  load_results, parse_result_specs, plot_curves,
                                  plot_trajectories)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True,
                        help="comma-separated result pickles written by rl.main --mode=test, "
                             "each optionally LABEL=PATH: runs sharing a label are one "
                             "configuration's seeds, averaged in the figure and summarised "
                             "below the table")
    parser.add_argument("--paper", default=DEFAULT_PAPER_NUMBERS,
                        help="paper_numbers.json (default: the copy in docs/)")
    parser.add_argument("--plot", default=None, help="PNG path for the curves (optional)")
    args = parser.parse_args(argv)
    try:
        results = load_results(*parse_result_specs(args.results))
    except FileNotFoundError as error:
        parser.error(str(error))
    paper = {}
    if os.path.exists(args.paper):
        paper = load_paper_numbers(args.paper, "rl_average_return")
    else:
        print(f"(paper numbers not found at {args.paper}; showing ours only)", file=sys.stderr)
    print(comparison_table(results, paper))
    for extra in (group_table(results), direction_table(results, paper)):
        if extra:
            print(extra)
    if args.plot:
        plot_curves(results, paper, args.plot)
        print(f"wrote {args.plot}")
        for result in results:
            if "trajectories" in result:
                stem, ext = os.path.splitext(args.plot)
                which = re.sub(r"\W+", "_", result["label"]).strip("_")   # method[_folder]
                out = f"{stem}_trajectories_{which}{ext or '.png'}"
                plot_trajectories(result, out)
                print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
