"""Paper Figure 3 (and Figure 6's K = 5 and 20) drawn from our sinusoid test results.

The numbers come from :mod:`maml_tf.reporting.sinusoid`, which builds the tables from the same
results; this module only draws them (matplotlib is imported when a figure is drawn).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from maml_tf.reporting.sinusoid import (KS, RUNS, paper_reference, run_results,
                                        sinusoid_records)


COLORS = {"maml": ("tab:blue", "tab:green"), "pretrained": ("tab:orange",),
          "oracle": ("tab:red",)}


def plot_mse_vs_steps(logroot: str, paper: dict, plot_dir: str, runs=RUNS) -> Optional[str]:
    """Paper Figure 3 (K = 10) with Figure 6's K = 5 and 20 beside it: MSE against gradient
    steps with 95% CIs, the paper's numbers as black crosses; linear axes as the paper's.

    Each run is drawn with its documented step sizes. Where tasks diverged the median is
    drawn instead of the mean, as an open circle. Returns None when nothing was tested.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    records = sinusoid_records(logroot)
    found = {run.folder: run_results(logroot, run, records)[0] for run in runs}
    if not any(found.values()):
        return None
    colors, used = {}, {method: 0 for method in COLORS}
    for run in runs:
        palette = COLORS[run.method]
        colors[run.folder] = palette[used[run.method] % len(palette)]
        used[run.method] += 1
    fig, axes = plt.subplots(1, len(KS), figsize=(13, 4.6))
    legend = {}
    for ax, k in zip(axes, KS):
        for run in runs:
            result = next((r for r in found[run.folder]
                           if r.k == k and r.step_size == run.test_step(k)), None)
            if result is None:
                continue
            color = colors[run.folder]
            if run.method == "oracle":
                legend[run.label] = ax.axhline(result.cells[0].mean or 0.0, ls=":", color=color)
                continue
            steps = sorted(result.cells)
            cells = [result.cells[s] for s in steps]
            y = [c.mean if c.comparable else (np.nan if c.median is None else c.median)
                 for c in cells]
            err = [c.ci95 if c.comparable else 0.0 for c in cells]
            label = run.label + (f", step {run.test_steps[0]:g}" if len(set(run.test_steps)) == 1
                                 else ", steps " + "/".join(f"{v:g}" for v in run.test_steps)
                                 + " (K = " + "/".join(map(str, KS)) + ")")
            legend[label] = ax.errorbar(steps, y, yerr=err, marker="o", ms=3, capsize=2,
                                        color=color)
            open_steps = [s for s, c in zip(steps, cells)
                          if not c.comparable and c.median is not None]
            if open_steps:
                ax.plot(open_steps, [y[steps.index(s)] for s in open_steps], "o", ms=7,
                        mfc="none", color=color)
                legend["median over tasks (some diverged)"] = Line2D(
                    [], [], ls="none", marker="o", ms=7, mfc="none", color="gray")
        for method in dict.fromkeys(run.method for run in runs if found[run.folder]):
            _, reference = paper_reference(paper, method, k)
            if reference:
                legend["paper (Table 2; Figure 3 read off the plot)"] = ax.plot(
                    list(reference), list(reference.values()), "kx", ms=7)[0]
        ax.set_title(f"k-shot regression, k={k}")
        ax.set_xlabel("number of gradient steps")
        ax.set_ylabel("mean squared error")
        ax.set_ylim(0, 3.5)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, "sinusoid_mse_vs_steps.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
