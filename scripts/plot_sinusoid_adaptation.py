"""The paper's qualitative sinusoid figure: predictions before and after 1 and 10 steps.

    .venv/bin/python scripts/plot_sinusoid_adaptation.py --logroot=logs --out=docs/figures

Loads the MAML and pretrained checkpoints that `./run.sh sinusoid_lr0.001` (or, with
--maml_run=sine, `./run.sh sinusoid`) and `./run.sh sinusoid_pretrained` write, draws one
sinusoid task per K (numpy seed --seed), fine-tunes each model on the K points with the step
size its preset's test entry uses (flags/experiments.py: MAML its training alpha, the
pretrained model the paper's Figure 6 steps) and plots the ground truth, the K points and the
predictions before adaptation, after 1 step and after 10 steps (paper Figure 2 / Figure 7).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import maml_tf  # noqa: E402,F401  (oneDNN on, quiet logs: before TensorFlow loads)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_generators.factory import TaskSources  # noqa: E402
from flags.experiments import EXPERIMENTS  # noqa: E402
from maml_tf import experiment, maml  # noqa: E402
from maml_tf.checkpoint import IterationCheckpointer  # noqa: E402
from maml_tf.config import ExperimentConfig  # noqa: E402
from maml_tf.reporting.sinusoid import RUNS  # noqa: E402

RUN_BY_FOLDER = {run.folder: run for run in RUNS}
PRESET_BY_FOLDER = {e.folder: e for e in EXPERIMENTS.values()
                    if e.flags.get("datasource") == "sinusoid"}


def load(logroot, run, update_lr, k):
    preset = PRESET_BY_FOLDER[run]
    trained = ExperimentConfig(**{key: value for key, value in preset.flags.items()
                                  if key != "logdir"})
    # the training K and step size name the experiment directory
    cfg = ExperimentConfig(datasource="sinusoid", norm=trained.norm, update_batch_size=k,
                           train_update_batch_size=trained.update_batch_size,
                           update_lr=update_lr, train_update_lr=trained.update_lr,
                           logdir=os.path.join(logroot, run), train=False)
    learner = experiment.build_learner(cfg, TaskSources(dim_input=1, dim_output=1))
    ckpt = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                 optimizer=learner.optimizer)
    if ckpt.restore(expect_partial=True) is None:
        raise SystemExit(f"no checkpoint in {cfg.experiment_dir}: run ./run.sh {preset.name} "
                         f"first (or pass --logroot)")
    return learner, experiment.inner_loop_spec(cfg)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logroot", default="logs")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--maml_run", default="sine_lr0.001", choices=["sine_lr0.001", "sine"],
                        help="MAML log folder: alpha 0.001 (released code) or 0.01")
    args = parser.parse_args()
    if not os.path.isdir(args.logroot):
        parser.error(f"--logroot={args.logroot!r} is not a folder")
    if any(k < 1 for k in args.k):
        parser.error(f"--k must be positive, got {args.k}")
    models = (args.maml_run, "sine_pretrained")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-5, 5, 200, dtype=np.float32)[None, :, None]
    rng = np.random.RandomState(args.seed)
    fig, axes = plt.subplots(len(args.k), 2, figsize=(11, 3.6 * len(args.k)), squeeze=False)
    for row, k in enumerate(args.k):
        amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0, np.pi)
        x = rng.uniform(-5, 5, (1, k, 1)).astype(np.float32)
        y = (amp * np.sin(x - phase)).astype(np.float32)
        for col, run in enumerate(models):
            lr = RUN_BY_FOLDER[run].test_step(k)
            learner, spec = load(args.logroot, run, lr, k)
            model = learner.model
            params = model.tiled_parameters(1)
            trajectory, _, _ = maml.adapt(model, params, {}, tf.constant(x), tf.constant(y),
                                          spec, 10)
            ax = axes[row, col]
            ax.plot(grid[0, :, 0], amp * np.sin(grid[0, :, 0] - phase), "r", label="ground truth")
            for name, p, style in (("pre-update", params, ":"),
                                   ("1 grad step", trajectory[0], "--"),
                                   ("10 grad steps", trajectory[9], "-")):
                ax.plot(grid[0, :, 0], model.forward(grid, params=p).numpy()[0, :, 0],
                        style, color="tab:green", label=name, alpha=0.9)
            ax.plot(x[0, :, 0], y[0, :, 0], "^", color="purple", label=f"{k} points used")
            ax.set_title(f"{RUN_BY_FOLDER[run].label}, K={k}, step {lr:g}", fontsize=9)
            ax.set_ylim(-6, 6)
        axes[row, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "sinusoid_adaptation.png")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
