"""Task groups (``--task_groups``) change the speed, never the maths.

The meta-batch's tasks computed as independent groups must give the meta-gradient, the
metrics, the pretraining gradients and the evaluation of the whole batch computed as one:
held to it in float64 on the per-task convolution path (the path the finite-difference
checks of test_maml_math.py cover), and in float32 on the default fast path.
"""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import maml
from maml_tf.config import ExperimentConfig
from maml_tf.learner import MetaLearner
from maml_tf.maml import InnerLoopSpec
from maml_tf.conv_paths import grouped_conv_gradients_available
from maml_tf.models import ConvNet

TASKS = 6


def _model_and_batch(dtype, conv_impl):
    tf.keras.utils.set_random_seed(3)
    model = ConvNet(3, img_size=8, channels=2, num_filters=3, dtype=dtype, conv_impl=conv_impl)
    rng = np.random.default_rng(3)
    for variable in model.shared.values():   # not zeros: a mis-ordered tiling would show
        variable.assign(rng.normal(size=variable.shape))
    labels = tf.constant(np.tile(np.eye(3), (TASKS, 2, 1)), dtype)
    inputs = rng.uniform(size=(2, TASKS, 6, model.dim_input))
    batch = (tf.constant(inputs[0], dtype), labels, tf.constant(inputs[1], dtype), labels)
    return model, batch


def _paths():
    paths = [("float64", "per_task", 1e-10)]
    if grouped_conv_gradients_available("float32")[0]:
        paths.append(("float32", "auto", 2e-4))
    return paths


@pytest.mark.parametrize("first_order", [False, True], ids=["SO", "FO"])
@pytest.mark.parametrize("dtype,conv_impl,rtol", _paths())
def test_grouped_meta_gradient_and_metrics_are_the_whole_batch_ones(dtype, conv_impl, rtol,
                                                                     first_order):
    model, batch = _model_and_batch(dtype, conv_impl)
    spec = InnerLoopSpec(update_lr=0.4, num_updates=2, classification=True,
                         update_batch_size=2, first_order=first_order)
    names = [v.name for v in model.trainable_variables]
    reference, reference_metrics = maml.meta_gradients(model, batch, spec)
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in reference)
    for groups in (2, 4, TASKS + 3):   # even, uneven (2, 2, 1, 1), more groups than tasks
        grads, metrics = maml.meta_gradients(model, batch, spec, task_groups=groups)
        for name, fast, plain in zip(names, grads, reference):
            np.testing.assert_allclose(fast, plain, rtol=rtol, atol=rtol * scale,
                                       err_msg=f"{groups} groups: {name}")
        assert sorted(metrics) == sorted(reference_metrics)
        for name in metrics:
            np.testing.assert_allclose(metrics[name], reference_metrics[name], rtol=rtol,
                                       err_msg=f"{groups} groups: {name}")


@pytest.mark.parametrize("dtype,conv_impl,rtol", _paths())
def test_grouped_pretraining_and_evaluation_are_the_whole_batch_ones(dtype, conv_impl, rtol):
    model, batch = _model_and_batch(dtype, conv_impl)
    spec = InnerLoopSpec(update_lr=0.4, num_updates=1, classification=True,
                         update_batch_size=2)
    plain = MetaLearner(model, spec)
    grouped = MetaLearner(model, spec, task_groups=4)
    fast, fast_metrics = maml.pretrain_gradients(model, batch, spec, task_groups=4)
    slow, slow_metrics = maml.pretrain_gradients(model, batch, spec)
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in slow)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)
    for name in slow_metrics:
        np.testing.assert_allclose(fast_metrics[name], slow_metrics[name], rtol=rtol)
    evaluated = grouped.evaluate(batch, num_steps=3)
    expected = plain.evaluate(batch, num_steps=3)
    assert evaluated["accuracies"].shape == (TASKS, 4)
    for name in expected:   # per task, in task order
        np.testing.assert_allclose(evaluated[name], expected[name], rtol=rtol, atol=1e-12,
                                   err_msg=name)


def test_split_tasks_cuts_consecutive_groups_as_even_as_possible():
    batch = (tf.reshape(tf.range(8.0), [8, 1]), tf.zeros([8, 3]))
    sizes = [int(part[0].shape[0]) for part in maml.split_tasks(batch, 3)]
    assert sizes == [3, 3, 2]
    firsts = [float(part[0][0, 0]) for part in maml.split_tasks(batch, 3)]
    assert firsts == [0.0, 3.0, 6.0]
    assert len(maml.split_tasks(batch, 20)) == 8          # at most one group per task
    assert len(maml.split_tasks(batch, 1)) == 1

    counts = []

    @tf.function(input_signature=[tf.TensorSpec([None, 1])])
    def unknown(x):   # the task count unknown while tracing: one group
        counts.append(len(maml.split_tasks((x,), 4)))
        return x
    unknown.get_concrete_function()
    assert counts == [1]


def test_task_groups_automatic_for_conv_nets_on_cpu_only():
    import os
    cores = len(os.sched_getaffinity(0))
    omniglot = ExperimentConfig(datasource="omniglot", meta_batch_size=32)
    assert omniglot.task_group_count == min(32, 2 * cores)
    assert omniglot.intra_op_parallelism == (1 if omniglot.task_group_count > 1 else 0)
    assert ExperimentConfig(datasource="miniimagenet", meta_batch_size=1).task_group_count == 1
    assert ExperimentConfig(datasource="omniglot", conv=False).task_group_count == 1
    assert ExperimentConfig(datasource="sinusoid").task_group_count == 1
    assert ExperimentConfig(datasource="omniglot", distribute="mirrored",
                            num_cpu_devices=2).task_group_count == 1
    explicit = ExperimentConfig(datasource="omniglot", task_groups=1)
    assert explicit.task_group_count == 1 and explicit.intra_op_parallelism == 0
    assert ExperimentConfig(datasource="sinusoid", task_groups=5).task_group_count == 5
