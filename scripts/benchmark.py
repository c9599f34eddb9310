"""Median milliseconds per meta-iteration (a benchmark, not a test).

    .venv/bin/python scripts/benchmark.py                 # every configuration below
    .venv/bin/python scripts/benchmark.py --only=sinusoid --iterations=500
    .venv/bin/python scripts/benchmark.py --only=omniglot_5way_1shot --conv_impl=grouped,folded

Each configuration builds the real model and MetaLearner, runs warm-up iterations (tracing,
XLA compilation), then times ``--iterations`` full meta-training steps (forward, inner loop,
meta-gradient, Adam update) on synthetic batches of the right shapes: the data pipeline is
measured separately. Prints a markdown table of medians, the first-order speed-up, the FLOPs
of one meta-iteration (TensorFlow's count of the traced meta-gradient, ``maml_tf.flops``) and
the fraction of the CPU's float32 ceiling reached: the GFLOP/s of a large matrix product
measured in the same sitting, in a process of its own with every core (and of a nominal
peak given with ``--peak_gflops``).
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import maml_tf  # noqa: E402,F401  (oneDNN on, quiet logs: before TensorFlow loads)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from maml_tf.config import ExperimentConfig  # noqa: E402
from maml_tf.flops import ceiling_in_own_process, meta_iteration_flops  # noqa: E402
from maml_tf.learner import MetaLearner  # noqa: E402
from maml_tf.maml import InnerLoopSpec  # noqa: E402
from maml_tf.conv_paths import CONV_IMPLS, fused_batch_norm_default  # noqa: E402
from maml_tf.models import ConvNet, FullyConnectedNet  # noqa: E402
from maml_tf.experiment import SINUSOID_HIDDEN  # noqa: E402
from maml_tf.runtime import machine_description, set_intra_op_threads  # noqa: E402
from flags.experiments import EXPERIMENTS  # noqa: E402

# Benchmark name -> registry preset whose numbers it times (flags/experiments.py).
PRESETS = {"sinusoid": "sinusoid", "omniglot_5way_1shot": "omniglot_5way_1shot",
           "omniglot_20way_1shot": "omniglot_20way_1shot",
           "miniimagenet_5way_1shot": "miniimagenet_1shot"}
MINIIMAGENET_QUERY = 15   # the original's query images per class for MiniImagenet training


def _config(preset_name: str) -> tuple:
    """(model factory, meta_batch, N, K support, Q query, update_lr, num_updates) of a preset
    (factories take the convolution path, one of maml_tf.conv_paths.CONV_IMPLS, and whether the
    learner is first order; the batch norm kernel is main.py's,
    maml_tf.conv_paths.fused_batch_norm_default)."""
    flags = EXPERIMENTS[preset_name].flags
    source, k = flags["datasource"], flags["update_batch_size"]
    if source == "sinusoid":
        def factory(impl, first_order):
            return FullyConnectedNet(1, 1, SINUSOID_HIDDEN, norm=flags.get("norm", "batch_norm"))
        n, q = 1, k
    else:
        n = flags.get("num_classes", 5)
        mini = source == "miniimagenet"

        def factory(impl, first_order):   # batch norm as main.py builds it
            max_pool = flags.get("max_pool", False)
            return ConvNet(n, 84 if mini else 28, 3 if mini else 1,
                           flags.get("num_filters", 64), max_pool=max_pool,
                           flatten_head=mini, conv_impl=impl,
                           fused_batch_norm=fused_batch_norm_default(max_pool, first_order))
        q = MINIIMAGENET_QUERY if mini else k
    return (factory, flags.get("meta_batch_size", 25), n, k, q, flags.get("update_lr", 0.001),
            flags.get("num_updates", 1))


CONFIGS = {name: _config(preset) for name, preset in PRESETS.items()}


def clip_value(name: str):
    """The meta-gradient clip main.py trains configuration ``name`` with (the original's
    [-10, 10] for MiniImagenet, none elsewhere)."""
    return 10.0 if "miniimagenet" in name else None


def task_groups_of(name: str, requested: int) -> int:
    """The task groups a training run of configuration ``name`` uses for ``--task_groups``
    = ``requested`` (-1: main.py's automatic choice, ``ExperimentConfig.task_group_count``)."""
    flags = EXPERIMENTS[PRESETS[name]].flags
    return ExperimentConfig(datasource=flags["datasource"], conv=flags.get("conv", True),
                            meta_batch_size=CONFIGS[name][1],
                            task_groups=requested).task_group_count


def synthetic_batch(model, tasks, n, k, q, rng):
    def part(per_class):
        x = rng.uniform(size=(tasks, n * per_class, model.dim_input)).astype(np.float32)
        if n == 1:
            y = rng.normal(size=(tasks, per_class, 1)).astype(np.float32)
        else:
            y = np.tile(np.eye(n, dtype=np.float32), (tasks, per_class, 1))
        return x, y
    (xa, ya), (xb, yb) = part(k), part(q)
    return tuple(tf.constant(v) for v in (xa, ya, xb, yb))


def time_config(name, first_order, xla, iterations, warmup, conv_impl="auto", per_call=1,
                task_groups=1):
    """(median ms per meta-iteration, first call s, conv path, FLOPs per meta-iteration);
    with ``per_call`` > 1, iterations run ``per_call`` at a time through
    ``meta_train_steps`` (as the trainer's ``--steps_per_call``) and the median of the calls
    is divided by ``per_call``."""
    factory, tasks, n, k, q, lr, steps = CONFIGS[name]
    tf.keras.utils.set_random_seed(0)
    model = factory(conv_impl, first_order)
    spec = InnerLoopSpec(lr, steps, classification=n > 1, update_batch_size=k,
                         first_order=first_order)
    learner = MetaLearner(model, spec, jit_compile=xla,
                          clip_value=clip_value(name),
                          task_groups=task_groups)
    rng = np.random.default_rng(0)
    flops = meta_iteration_flops(learner, synthetic_batch(model, tasks, n, k, q, rng))[0]
    if per_call > 1:
        batches = [synthetic_batch(model, tasks, n, k, q, rng) for _ in range(per_call)]
        stacked = tuple(tf.stack(part) for part in zip(*batches))

        def call():
            count, last = learner.meta_train_steps(stacked)  # int(): forces completion
            return float(last["post_loss"])
        iterations = max(3, iterations // per_call)
        warmup = max(1, warmup // per_call)
    else:
        batch = synthetic_batch(model, tasks, n, k, q, rng)

        def call():
            return float(learner.meta_train_step(batch)["post_loss"])  # forces completion
    start = time.perf_counter()
    call()
    trace_s = time.perf_counter() - start
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return (1000 * float(np.median(times)) / per_call, trace_s,
            getattr(model, "conv_impl", "-"), flops)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--iterations", type=int, default=0,
                        help="timed iterations (default: 2000 sinusoid, 30 conv)")
    parser.add_argument("--conv_impl", default="auto",
                        help="convolution path(s) of the conv nets, comma-separated, from "
                             f"{', '.join(CONV_IMPLS)} (both: grouped,per_task); one row each")
    parser.add_argument("--peak_gflops", type=float, default=0.0,
                        help="a nominal float32 peak (cores x GHz x FLOPs per cycle) to print "
                             "fractions of as well, e.g. 156.8 for 2 Zen 3 cores at 2.45 GHz")
    parser.add_argument("--intra_op_threads", type=int, default=-1,
                        help="threads per kernel: -1 as training runs (main.py's "
                             "--intra_op_threads: 1 for the sinusoid and for conv nets in "
                             "task groups, TensorFlow's default for conv nets without; the "
                             "sinusoid's rows run in a child process when the two differ); "
                             "0 TensorFlow's default; N")
    parser.add_argument("--task_groups", type=int, default=-1,
                        help="independent groups of tasks per meta-batch: -1 as training runs "
                             "(main.py's --task_groups: two per core for conv nets, with one "
                             "thread per kernel), 1 the whole batch as one computation; N")
    parser.add_argument("--ceiling_gflops", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--rows_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_gflops < 0:
        parser.error(f"--peak_gflops must be >= 0, got {args.peak_gflops}")
    if args.intra_op_threads < -1:
        parser.error(f"--intra_op_threads must be >= -1, got {args.intra_op_threads}")
    if args.task_groups < -1 or args.task_groups == 0:
        parser.error(f"--task_groups must be -1 or >= 1, got {args.task_groups}")
    names = [n for n in CONFIGS if not args.only or n in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(CONFIGS) if args.only else set()
    if unknown:
        parser.error(f"--only: unknown configuration(s) {sorted(unknown)}; "
                     f"known: {', '.join(CONFIGS)}")
    impls = tuple(args.conv_impl.replace("both", "grouped,per_task").split(","))
    if set(impls) - set(CONV_IMPLS):
        parser.error(f"--conv_impl: unknown path(s) {sorted(set(impls) - set(CONV_IMPLS))}")
    groups = {name: task_groups_of(name, args.task_groups) for name in names}
    # As main.py's --intra_op_threads -1: one thread per kernel for the sinusoid and for
    # task groups; the sinusoid's rows run in a child process when the others differ.
    wanted = {name: 1 if name == "sinusoid" or groups[name] > 1 else 0 for name in names}
    conv_threads = {wanted[name] for name in names if name != "sinusoid"}
    sinusoid_apart = (args.intra_op_threads == -1 and "sinusoid" in names
                      and conv_threads == {0})
    threads = args.intra_op_threads
    if threads == -1:
        threads = 1 if names == ["sinusoid"] else max(conv_threads)
    set_intra_op_threads(threads)  # before TensorFlow's first op
    if args.ceiling_gflops:
        ceiling = {"matmul": args.ceiling_gflops}
    else:  # in its own process: with every core, whatever this one's thread setting
        ceiling = ceiling_in_own_process()
    if not args.rows_only:
        print(f"TensorFlow {tf.__version__}; {machine_description()}; "
              f"load average {os.getloadavg()[0]:.2f}; intra-op threads "
              f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
              f"{' (the sinusoid: 1)' if sinusoid_apart else ''}")
        source = (f", 3x3 convolution {ceiling['conv']:.1f} GFLOP/s (measured: maml_tf.flops)"
                  if "conv" in ceiling else " (given: --ceiling_gflops)")
        print(f"float32 ceiling: matrix product {ceiling['matmul']:.1f} GFLOP/s{source}")
    peaks = [("matmul", ceiling["matmul"])] + ([("peak", args.peak_gflops)]
                                               if args.peak_gflops else [])
    fractions = " | ".join(f"SO / FO % of {label}" for label, _ in peaks)
    if not args.rows_only:
        print("| configuration | conv path | task groups | XLA | steps per call | "
              "second-order ms | "
              "first-order ms | FO speed-up | first call s (SO) | GFLOP SO / FO | "
              f"{fractions} |")
        print("|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(peaks), flush=True)
    if sinusoid_apart:
        names.remove("sinusoid")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--only=sinusoid",
                        "--rows_only", f"--ceiling_gflops={ceiling['matmul']}",
                        f"--peak_gflops={args.peak_gflops}",
                        f"--iterations={args.iterations}",
                        f"--task_groups={args.task_groups}"], check=True)
    for name in names:
        # the sinusoid: XLA off/on, one step per call and the trainer's default 100
        variants = ([(False, 1), (True, 1), (True, 100)] if name == "sinusoid"
                    else [(False, 1)])
        iterations = args.iterations or (2000 if name == "sinusoid" else 30)
        warmup = 200 if name == "sinusoid" else 3
        for impl in impls if name != "sinusoid" else ("-",):
            for xla, per_call in variants:
                second, trace, path, so_flops = time_config(name, False, xla, iterations,
                                                            warmup, impl, per_call, groups[name])
                first, _, _, fo_flops = time_config(name, True, xla, iterations, warmup, impl,
                                                    per_call, groups[name])
                shares = " | ".join(
                    f"{so_flops / second / 1e6 / gflops * 100:.1f} / "
                    f"{fo_flops / first / 1e6 / gflops * 100:.1f}" for _, gflops in peaks)
                print(f"| {name} | {path} | {groups[name]} | {'on' if xla else 'off'} | "
                      f"{per_call} | "
                      f"{second:.3f} | {first:.3f} | {100 * (1 - first / second):.0f}% less "
                      f"time | {trace:.1f} | {so_flops / 1e9:.4g} / {fo_flops / 1e9:.4g} | "
                      f"{shares} |", flush=True)


if __name__ == "__main__":
    main()
