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
# the variants of one method (its color): marker and line style, in the order drawn
VARIANT_STYLES = ("^:", "v-.", "D:", "x-.", "P:", "*-.")   # dashed: the paper


def load_results(paths: list, labels: list | None = None) -> list:
    """The result pickles, each labelled for the table and the plots: its method, or, when
    two results of one task share a method (e.g. the pretrained baseline and its multitask
    variant), its method and run folder. ``labels`` (one per path, None for the automatic
    one) names runs explicitly: results of one task with the same label are one
    configuration's runs (seeds), drawn as their mean (see :func:`plot_curves`)."""
    labels = list(labels) if labels is not None else [None] * len(paths)
    if len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} result files")
    results = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"results file not found: {path}")
        with open(path, "rb") as handle:
            results.append(pickle.load(handle))
    for path, result, label in zip(paths, results, labels):
        if label:
            result["label"], result["group"] = label, True
            continue
        shared = [r for r in results if (r["env_name"], r["method"]) ==
                  (result["env_name"], result["method"])]
        folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
        result["label"] = result["method"] + (f" ({folder})" if len(shared) > 1 else "")
    return results


def parse_result_specs(text: str) -> tuple:
    """``[LABEL=]PATH,...`` -> (paths, labels); a label names a configuration, and the runs
    sharing one are averaged in the figure (``maml seeds=a.pkl,maml seeds=b.pkl``)."""
    paths, labels = [], []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        label, sep, path = entry.partition("=")
        if not sep or os.sep in label:
            label, path = None, entry
        paths.append(path)
        labels.append(label.strip() if label else None)
    return paths, labels


def groups(results: list) -> list:
    """[(env_name, label, [results])] in first-seen order: the runs of each explicitly
    labelled configuration (and each other result alone)."""
    found = {}
    for index, result in enumerate(results):
        key = ((result["env_name"], _label(result)) if result.get("group")
               else (result["env_name"], index))
        found.setdefault(key, []).append(result)
    return [(runs[0]["env_name"], _label(runs[0]), runs) for runs in found.values()]


def group_table(results: list) -> str:
    """Mean (standard deviation over runs, ddof 1) per step of every labelled configuration
    with more than one run: the spread that seeds give, which a single test's spread over
    goals does not."""
    lines = []
    for env, label, runs in groups(results):
        if len(runs) < 2:
            continue
        means = np.array([run["mean_per_step"] for run in runs], dtype=np.float64)
        cells = " / ".join(f"{m:.2f} ({s:.2f})" for m, s in
                           zip(means.mean(axis=0), means.std(axis=0, ddof=1)))
        lines.append(f"{env:<14} {label}: {len(runs)} runs, mean (sd over runs) per step: "
                     f"{cells}")
    return "\n".join(lines)


def _label(result: dict) -> str:
    return result.get("label", result["method"])


def _paper_method(paper: dict, result: dict) -> dict | None:
    """The paper's record for this result's task and method (paper_numbers.json), or None."""
    return paper.get(result["paper_key"], {}).get(result["method"])


def paper_entry(paper: dict, result: dict):
    """(means, stds) per step from the paper for this task and method, or None."""
    entry = _paper_method(paper, result)
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


def direction_table(results: list, paper: dict) -> str:
    """Forward/backward tasks: each result's mean per step over its backward goals and over
    its forward goals, beside the paper's (``by_direction`` in paper_numbers.json).

    Why: a mean over both directions hides which one falls short, and the paper's runs were
    not balanced (its ant reaches 600 forward and 398 backward after one step); ours and the
    paper's test goals split differently (the ant: 25 / 15 against 20 / 20), so the means per
    direction are what compare. Results without goals of -1 and +1 are left out.
    """
    lines = []
    for result in results:
        tasks = np.ravel(np.asarray(result.get("tasks", []), dtype=np.float64))
        returns = result.get("returns")
        if returns is None or not tasks.size or not set(np.unique(tasks)) <= {-1.0, 1.0}:
            continue
        returns = np.asarray(returns, dtype=np.float64)
        reference = (_paper_method(paper, result) or {}).get("by_direction")
        for index, (name, sign) in enumerate((("backward", -1.0), ("forward", 1.0))):
            mask = tasks == sign
            if not mask.any():
                continue
            ours = " / ".join(f"{value:.2f}" for value in returns[:, mask].mean(axis=1))
            line = (f"{result['env_name']:<14} {_label(result)}, {name} goals ({mask.sum()}): "
                    f"{ours}")
            if reference is not None:
                theirs = " / ".join(f"{value:.2f}" for value in reference[name])
                line += f"; paper ({reference['num_tasks'][index]}): {theirs}"
            lines.append(line)
    return "\n".join(lines)


def plot_curves(results: list, paper: dict, path: str) -> None:
    """Average return vs number of gradient steps, ours (solid; variants of a method dotted
    or dash-dotted in its color, each with its own marker) and the paper's (dashed). A
    labelled configuration with several runs is drawn as their mean, each run faintly and
    the band between the lowest and highest."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r["env_name"] for r in results})
    # the legend beside each panel, not over its curves (seeds and variants make it long)
    fig, axes = plt.subplots(1, len(envs), figsize=(7.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        drawn = set()   # a method's paper curve once, also beside a variant of the method
        variants = {}   # method -> labels of its variants drawn so far (their styles)
        for _, label, runs in [g for g in groups(results) if g[0] == env]:
            method = runs[0]["method"]
            color = COLORS.get(method, None)
            style = "o-"
            if label != method:
                drawn_variants = variants.setdefault(method, [])
                style = VARIANT_STYLES[len(drawn_variants) % len(VARIANT_STYLES)]
                drawn_variants.append(label)
            curves = np.array([run["mean_per_step"] for run in runs], dtype=np.float64)
            mean = curves.mean(axis=0)
            name = f"{label} (ours" + (f", mean of {len(runs)})" if len(runs) > 1 else ")")
            if method == "oracle":
                # the original evaluated the oracle without adaptation (step size 0)
                ax.axhline(mean[0], color=color, ls=style[1:], label=name)
            else:
                steps = np.arange(curves.shape[1])
                ax.plot(steps, mean, style, color=color, label=name)
                if len(runs) > 1:   # each run faintly, and the band between them
                    for curve in curves:
                        ax.plot(steps, curve, style[1:], color=color, alpha=0.3, lw=0.8)
                    ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0),
                                    color=color, alpha=0.08)
            reference = paper_entry(paper, runs[0])
            if reference is not None and method not in drawn:
                drawn.add(method)
                means = reference[0]
                if len(means) == 1:
                    ax.axhline(means[0], ls="--", color=color, label=f"{method} (paper)")
                else:
                    ax.plot(np.arange(len(means)), means, "s--", color=color, alpha=0.7,
                            label=f"{method} (paper)")
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
