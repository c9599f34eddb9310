"""Section 5.3 (RL): test-protocol results beside the paper's, and Figures 4/5.

Paper numbers are docs/paper_numbers.json's ``rl_average_return`` (the authors' saved per-step
means), loaded by :mod:`maml_tf.reporting.paper`. For the point robot the paths before and
after adaptation are drawn too, as the paper's Figure 4.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

COLORS = {"maml": "tab:blue", "pretrained": "tab:orange", "random": "tab:green",
          "oracle": "tab:red"}


def load_results(paths: list) -> list:
    """The result pickles, each labelled for the table and the plots: its method, or, when
    two results of one task share a method (e.g. the pretrained baseline and its multitask
    variant), its method and run folder."""
    results = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"results file not found: {path}")
        with open(path, "rb") as handle:
            results.append(pickle.load(handle))
    for path, result in zip(paths, results):
        shared = [r for r in results if (r["env_name"], r["method"]) ==
                  (result["env_name"], result["method"])]
        folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
        result["label"] = result["method"] + (f" ({folder})" if len(shared) > 1 else "")
    return results


def _label(result: dict) -> str:
    return result.get("label", result["method"])


def paper_entry(paper: dict, result: dict):
    """(means, stds) per step from the paper for this task and method, or None."""
    entry = paper.get(result["paper_key"], {}).get(result["method"])
    if entry is None:
        return None
    if "mean_per_grad_step" in entry:
        return entry["mean_per_grad_step"], entry.get("std_over_tasks")
    return [entry["mean"]], None   # the oracle: a single number


def comparison_table(results: list, paper: dict) -> str:
    width = max([11] + [len(_label(result)) for result in results])
    lines = [f"{'task':<14} {'method':<{width}} {'steps':>5} {'ours mean':>10} {'ours std':>9} "
             f"{'paper mean':>11} {'paper std':>10}"]
    for result in results:
        reference = paper_entry(paper, result)
        for step, (mean, std) in enumerate(zip(result["mean_per_step"],
                                               result["std_per_step"])):
            paper_mean = paper_std = ""
            if reference is not None and step < len(reference[0]):
                paper_mean = f"{reference[0][step]:.2f}"
                if reference[1] is not None:
                    paper_std = f"{reference[1][step]:.2f}"
            lines.append(f"{result['env_name']:<14} {_label(result):<{width}} {step:>5} "
                         f"{mean:>10.2f} {std:>9.2f} {paper_mean:>11} {paper_std:>10}")
    return "\n".join(lines)


def plot_curves(results: list, paper: dict, path: str) -> None:
    """Average return vs number of gradient steps, ours (solid) and the paper's (dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r["env_name"] for r in results})
    # the legend beside each panel, not over its curves (seeds and variants make it long)
    fig, axes = plt.subplots(1, len(envs), figsize=(7.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        drawn = set()   # a method's paper curve once, also beside a variant of the method
        for result in [r for r in results if r["env_name"] == env]:
            color = COLORS.get(result["method"], None)
            steps = np.arange(len(result["mean_per_step"]))
            variant = _label(result) != result["method"]
            if result["method"] == "oracle":
                # the original evaluated the oracle without adaptation (step size 0)
                ax.axhline(result["mean_per_step"][0], color=color, ls=":" if variant else "-",
                           label=f"{_label(result)} (ours)")
            else:
                ax.plot(steps, result["mean_per_step"], "^:" if variant else "o-", color=color,
                        label=f"{_label(result)} (ours)")
            reference = paper_entry(paper, result)
            if reference is not None and result["method"] not in drawn:
                drawn.add(result["method"])
                means = reference[0]
                if len(means) == 1:
                    ax.axhline(means[0], ls="--", color=color, label=f"{result['method']} (paper)")
                else:
                    ax.plot(np.arange(len(means)), means, "s--", color=color, alpha=0.7,
                            label=f"{result['method']} (paper)")
        ax.set_title(env)
        ax.set_xlabel("number of gradient steps")
        ax.set_ylabel("average return")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_trajectories(result: dict, path: str, num_tasks: int = 4) -> None:
    """Point robot: paths before (step 0) and after adaptation (last step) for a few goals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = result["trajectories"]
    num_tasks = min(num_tasks, len(result["tasks"]))
    fig, axes = plt.subplots(1, num_tasks, figsize=(4 * num_tasks, 4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        for step, style in ((0, ":"), (1, "-"), (len(paths) - 1, "-")):
            obs, mask = paths[step]["observations"][k], paths[step]["mask"][k]
            for i in range(obs.shape[0]):
                length = int(mask[i].sum())
                ax.plot(obs[i, :length, 0], obs[i, :length, 1], style, lw=1,
                        color=f"C{min(step, 3)}", label=f"{step} steps" if i == 0 else None)
        goal = np.atleast_1d(result["tasks"][k])
        ax.plot(goal[0], goal[1], "k*", ms=12, label="goal")
        ax.plot(0, 0, "ko", ms=4)
        ax.set_xlim(-0.6, 0.6)
        ax.set_ylim(-0.6, 0.6)
        ax.set_aspect("equal")
        ax.set_title(f"{result['method']}, task {k}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
