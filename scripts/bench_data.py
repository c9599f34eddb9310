"""Data-only throughput of the classification task sources (no model), in tasks per second.

Usage::

    python scripts/bench_data.py --omniglot_dir=./data/omniglot_resized \\
        --miniimagenet_dir=./data/miniImagenet [--batches=50]

For each paper configuration it reports the one-off start-up cost (decoded-image cache load or
build, and the 200,000-task pool), then times ``train_batch`` and prints the median time per
meta-batch and the resulting tasks/s. Either folder may be omitted to skip that data set.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_generators.miniimagenet import MiniImagenetTasks  # noqa: E402
from data_generators.omniglot import OmniglotTasks  # noqa: E402
from flags.experiments import EXPERIMENTS  # noqa: E402

SOURCES = {"omniglot": OmniglotTasks, "miniimagenet": MiniImagenetTasks}


def paper_configs() -> list:
    """(name, task source, num_classes, update_batch_size, meta_batch_size) of every distinct
    data configuration among the registry's Table 1 presets."""
    found = {}
    for preset in EXPERIMENTS.values():
        flags = preset.flags
        if preset.kind != "supervised" or flags.get("datasource") not in SOURCES:
            continue
        ways, shots = flags.get("num_classes", 5), flags["update_batch_size"]
        key = (flags["datasource"], ways, shots, flags["meta_batch_size"])
        found.setdefault(key, (f"{flags['datasource']} {ways}-way {shots}-shot",
                               SOURCES[flags["datasource"]], ways, shots,
                               flags["meta_batch_size"]))
    return list(found.values())


def bench(name, tasks_class, folder, num_classes, shots, meta_batch_size, batches):
    start = time.perf_counter()
    tasks = tasks_class(folder, num_classes, shots, train=True, rng_seed=0)
    tasks.train_batch(meta_batch_size)  # loads the images and draws the pool
    startup = time.perf_counter() - start
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        tasks.train_batch(meta_batch_size)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{name:28s} mbs {meta_batch_size:2d}: start-up {startup:6.2f} s, "
          f"median {1000 * median:7.2f} ms/batch, {meta_batch_size / median:8.0f} tasks/s",
          flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--omniglot_dir", help="prepared Omniglot tree")
    parser.add_argument("--miniimagenet_dir", help="prepared MiniImagenet tree")
    parser.add_argument("--batches", type=int, default=50, help="timed batches per config")
    args = parser.parse_args(argv)
    folders = {OmniglotTasks: args.omniglot_dir, MiniImagenetTasks: args.miniimagenet_dir}
    for name, tasks_class, num_classes, shots, meta_batch_size in paper_configs():
        if folders[tasks_class]:
            bench(name, tasks_class, folders[tasks_class], num_classes, shots,
                  meta_batch_size, args.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
