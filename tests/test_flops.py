"""maml_tf.flops: TensorFlow's FLOP counts summed over a graph, and the measured ceiling."""
import maml_tf  # noqa: F401  (oneDNN on, before TensorFlow loads)

import tensorflow as tf

from maml_tf.flops import graph_flops, meta_iteration_flops
from maml_tf.learner import MetaLearner
from maml_tf.maml import InnerLoopSpec
from maml_tf.models import FullyConnectedNet


def test_graph_flops_counts_products_and_convolutions_by_hand():
    def fn(x, w, images, kernel):
        return tf.matmul(x, w), tf.nn.conv2d(images, kernel, 1, "SAME")
    args = (tf.ones((8, 16)), tf.ones((16, 4)), tf.ones((2, 6, 6, 3)), tf.ones((3, 3, 3, 5)))
    total, per_type = graph_flops(tf.function(fn).get_concrete_function(*args).graph)
    assert per_type["MatMul"] == 2 * 8 * 16 * 4
    assert per_type["Conv2D"] == 2 * (2 * 6 * 6 * 5) * (3 * 3 * 3)
    assert total == sum(per_type.values())


def test_batched_products_count_the_contracted_length_with_adjoints():
    """x^T dy (a batched dense layer's weight gradient) contracts over the 10 rows, not the
    40 columns: TensorFlow's own registered count gets this wrong."""
    def fn(x, dy, w):
        return (tf.linalg.matmul(x, dy, adjoint_a=True),      # [3, 40, 8], contracted 10
                tf.linalg.matmul(dy, w, adjoint_b=True))      # [3, 10, 40], contracted 8
    args = (tf.ones((3, 10, 40)), tf.ones((3, 10, 8)), tf.ones((3, 40, 8)))
    _, per_type = graph_flops(tf.function(fn).get_concrete_function(*args).graph)
    assert per_type["BatchMatMulV2"] == 2 * 3 * 40 * 8 * 10 + 2 * 3 * 10 * 40 * 8


def test_second_order_meta_iteration_costs_more_than_first_order():
    """The second-order terms are in the traced graph: more FLOPs, and at least the forward
    products of the query pass (tasks x points x the hidden layers' multiply-adds)."""
    tasks, points = 4, 10
    batch = tuple(tf.random.stateless_normal((tasks, points, 1), seed=(i, 0))
                  for i in range(4))
    counts = {}
    for first_order in (False, True):
        tf.keras.utils.set_random_seed(0)
        model = FullyConnectedNet(1, 1, (40, 40))
        learner = MetaLearner(model, InnerLoopSpec(0.01, 1, classification=False,
                                                   update_batch_size=points,
                                                   first_order=first_order))
        counts[first_order], per_type = meta_iteration_flops(learner, batch)
        assert per_type["BatchMatMulV2"] + per_type["MatMul"] > 0
    forward_products = 2 * tasks * points * (1 * 40 + 40 * 40 + 40 * 1)
    assert counts[True] > forward_products
    assert counts[False] > counts[True]
