"""FLOP counts of traced graphs and the CPU's measured float32 ceiling, for speed reports.

Why: a time per meta-iteration says little on its own across machines; the fraction of what
the CPU can do says how much is left to win. The FLOPs come from TensorFlow's registered
``flops`` statistics (what ``tf.compat.v1.profiler``'s float_operation view sums), so nobody
has to trust a hand count. The ceiling is *measured* on the machine at hand (every core,
the project's oneDNN setting), because the nominal peak (cores x clock x FLOPs per cycle)
depends on the CPU model, turbo and what a virtual machine exposes.

Counting a traced function's FLOPs is cheap; measuring the ceiling
(``measured_ceiling_gflops()``, GFLOP/s per kernel) takes about 8 s, so the example leaves
it out.

Example:
    >>> import tensorflow as tf
    >>> from maml_tf.flops import graph_flops
    >>> fn = tf.function(lambda a, b: tf.matmul(a, b))
    >>> x = tf.ones((64, 64))
    >>> total, per_type = graph_flops(fn.get_concrete_function(x, x).graph)
    >>> total == 2 * 64 ** 3 and per_type["MatMul"] == total
    True

``python -m maml_tf.flops`` prints the ceiling as one JSON line (benchmarks measure it in a
process of its own, with every core, whatever their own thread setting).
"""
from __future__ import annotations

import collections
import json
import time

import numpy as np
import tensorflow as tf


BATCH_MATMULS = ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def _batch_matmul_flops(op) -> int:
    """2 x output elements x the contracted length of a batched matrix product.

    Why not TensorFlow's registered count: it reads the contracted length from a
    ``transpose_a`` attribute that batched products do not have (theirs is ``adj_x``), so
    every product with an adjoint first operand, such as the weight gradient of a batched
    dense layer (x^T dy), is counted with the wrong length (TensorFlow 2.21): 4x too many
    FLOPs for the sinusoid's hidden-layer gradients, 29x for a 20 x 576 patch matrix.
    """
    a_shape = op.inputs[0].shape
    out_shape = op.outputs[0].shape
    if not (a_shape.is_fully_defined() and out_shape.is_fully_defined()):
        raise ValueError("shape not fully known")
    contracted = a_shape[-2] if op.get_attr("adj_x") else a_shape[-1]
    return 2 * out_shape.num_elements() * contracted


def graph_flops(graph) -> tuple[int, collections.Counter]:
    """(total FLOPs, {op type: FLOPs}) of every op of ``graph`` with a registered count.

    Ops whose shapes are not fully known at trace time are left out (TensorFlow cannot
    count them), as are ops without a registered count (most element-wise ones beyond the
    arithmetic kernels), so the total is a floor, not an upper bound. Batched matrix
    products are counted here (:func:`_batch_matmul_flops`), the rest by TensorFlow.
    """
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.util import deprecation
    per_type = collections.Counter()
    with deprecation.silence():  # the registry's own use of a TF1 helper warns
        for op in graph.get_operations():
            try:
                if op.type in BATCH_MATMULS:
                    value = _batch_matmul_flops(op)
                else:
                    value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
            except ValueError:  # a shape not fully known: not counted
                continue
            if value:
                per_type[op.type] += int(value)
    return sum(per_type.values()), per_type


def meta_iteration_flops(learner, batch) -> tuple[int, collections.Counter]:
    """``graph_flops`` of one meta-gradient (forward, inner loop, second-order terms) of a
    ``maml_tf.learner.MetaLearner`` on ``batch``, traced without XLA (the same maths as
    with it); Adam's few element-wise ops are not counted."""
    fn = tf.function(learner._meta_grads_impl)
    return graph_flops(fn.get_concrete_function(*batch).graph)


def _fastest_seconds(fn, args, repeats: int, warmup: int = 2) -> float:
    """The fastest of ``repeats`` calls: a ceiling is what the CPU can do, and on a shared
    machine noise only ever slows a call down (medians of 5 moved between 104 and 150
    GFLOP/s for the same product on an AVX2 EPYC; the fastest call between 146 and 154)."""
    for _ in range(warmup):
        fn(*args).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).numpy()  # .numpy(): waits for the result
        times.append(time.perf_counter() - start)
    return float(np.min(times))


def measured_ceiling_gflops(repeats: int = 10) -> dict:
    """Float32 GFLOP/s this process reaches on two large dense kernels: a 2048 x 2048 matrix
    product and a 3 x 3 convolution (64 images, 84 x 84, 64 -> 64 channels: MiniImagenet's
    first block at a width where oneDNN's kernels are at their best). The fastest of
    ``repeats`` calls after warm-up; about 8 s on two AVX2 cores."""
    rng = np.random.default_rng(0)
    n = 2048
    a = tf.constant(rng.standard_normal((n, n)), tf.float32)
    matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    images = tf.constant(rng.standard_normal((64, 84, 84, 64)), tf.float32)
    kernel = tf.constant(rng.standard_normal((3, 3, 64, 64)), tf.float32)
    conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
    conv_flops = graph_flops(conv.get_concrete_function(images, kernel).graph)[0]
    return {"matmul": 2 * n ** 3 / _fastest_seconds(matmul, (a, a), repeats) / 1e9,
            "conv": conv_flops / _fastest_seconds(conv, (images, kernel), repeats) / 1e9}


def ceiling_in_own_process() -> dict:
    """:func:`measured_ceiling_gflops` in a fresh ``python -m maml_tf.flops`` process: every
    core, whatever the calling process's thread setting (a benchmark running kernels on one
    thread would otherwise measure a one-core ceiling)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    output = subprocess.run([sys.executable, "-m", "maml_tf.flops"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


if __name__ == "__main__":  # ``python -m maml_tf.flops``: the ceiling as one JSON line
    print(json.dumps(measured_ceiling_gflops()))
