"""Median ms per meta-iteration of every Table 1 configuration on the real data pipeline.

    .venv/bin/python scripts/benchmark_classification.py \
        --omniglot_folder=data/omniglot_resized --miniimagenet_folder=data/miniImagenet

For each Table 1 preset of the registry (second and first order): builds the real task source and
learner exactly as main.py does, warms up (tracing), then times ``--iterations`` iterations,
separately for sampling a batch (data only) and for the meta-training step, and reports the
medians with the time 60,000 iterations would take at that rate.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import maml_tf  # noqa: E402,F401  (oneDNN on, quiet logs: before TensorFlow loads)

import numpy as np  # noqa: E402

from data_generators.factory import build_task_sources  # noqa: E402
from maml_tf import experiment  # noqa: E402
from maml_tf.reporting.classification import classification_runs  # noqa: E402
from maml_tf.runtime import set_intra_op_threads  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--omniglot_folder", default="data/omniglot_resized")
    parser.add_argument("--miniimagenet_folder", default="data/miniImagenet")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--only", default="", help="substring of the configuration label")
    args = parser.parse_args()
    print("| configuration | data ms | step ms (second order) | 60,000 it | "
          "step ms (first order) | 60,000 it (FO) |")
    print("|---|---|---|---|---|---|")
    seen, selected = set(), []
    for preset, cfg in classification_runs("logs"):
        base = preset.label.replace(", first order", "")
        if not (cfg.stop_grad or base in seen or args.only not in preset.label):
            seen.add(base)
            selected.append((preset, cfg))
    # Threads as main.py sets them (one per kernel for conv nets in task groups); they are
    # fixed for the process, so rows that would train with other threads say so.
    threads = set_intra_op_threads(max(cfg.intra_op_parallelism for _, cfg in selected))
    for preset, cfg in selected:
        label = preset.label
        if cfg.intra_op_parallelism != threads:
            label += f" (timed with {threads or 'default'} threads per kernel; trains with " \
                     f"{cfg.intra_op_parallelism or 'default'}: time it alone with --only)"
        cfg.omniglot_folder, cfg.miniimagenet_folder = args.omniglot_folder, args.miniimagenet_folder
        sources = build_task_sources(cfg)
        row = [label]
        for first_order in (False, True):
            cfg.stop_grad = first_order
            learner = experiment.build_learner(cfg, sources)
            data_ms, step_ms = [], []
            for i in range(args.iterations + 2):
                start = time.perf_counter()
                batch = sources.train()
                middle = time.perf_counter()
                float(learner.meta_train_step(batch)["post_loss"])
                end = time.perf_counter()
                if i >= 2:  # the first calls trace
                    data_ms.append(1000 * (middle - start))
                    step_ms.append(1000 * (end - middle))
            if not first_order:
                row.append(f"{np.median(data_ms):.1f}")
            step = float(np.median(step_ms))
            total_h = 60000 * (step + np.median(data_ms)) / 1000 / 3600
            # Tenths where a step takes a few ms (the no-conv nets): whole ms hide the
            # first-order saving there.
            row += [f"{step:.1f}" if step < 100 else f"{step:.0f}", f"{total_h:.1f} h"]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
