"""Fast paths change the speed, never the maths: each is checked against the plain path."""
import os

import numpy as np
import pytest
import tensorflow as tf

from data_generators.factory import build_task_sources
from maml_tf.learner import MetaLearner
from maml_tf.maml import InnerLoopSpec
from maml_tf.models import FullyConnectedNet


def _learner(jit: bool, seed: int = 0) -> MetaLearner:
    tf.keras.utils.set_random_seed(seed)
    model = FullyConnectedNet(1, 1, (40, 40), norm="None")
    spec = InnerLoopSpec(0.01, 1, classification=False, update_batch_size=10)
    return MetaLearner(model, spec, jit_compile=jit)


def _stack(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-5, 5, size=(n, 25, 10, 1)).astype(np.float32) for _ in range(4))


def _max_difference(a: MetaLearner, b: MetaLearner) -> float:
    return max(float(np.abs(x.numpy() - y.numpy()).max())
               for x, y in zip(a.model.trainable_variables, b.model.trainable_variables))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("meta", [True, False])
def test_many_steps_per_call_equal_one_step_per_call(jit, meta):
    stack = _stack()
    one_by_one, together = _learner(jit), _learner(jit)
    initial = [v.numpy().copy() for v in together.model.trainable_variables]
    for i in range(20):
        batch = tuple(x[i] for x in stack)
        metrics = one_by_one.meta_train_step(batch) if meta else one_by_one.pretrain_step(batch)
    applied, last = (together.meta_train_steps(stack) if meta
                     else together.pretrain_steps(stack))
    assert applied == 20 and bool(last["finite"])
    assert int(together.optimizer.iterations) == int(one_by_one.optimizer.iterations) == 20
    np.testing.assert_allclose(float(last["pre_loss"]), float(metrics["pre_loss"]), rtol=1e-5)
    assert _max_difference(one_by_one, together) < 1e-6
    assert max(float(np.abs(v.numpy() - w).max())
               for v, w in zip(together.model.trainable_variables, initial)) > 1e-3


def test_many_steps_stop_before_the_first_non_finite_step():
    stack = _stack()
    stack[3][7, 0, 0, 0] = np.nan  # a query label of iteration 7
    learner, reference = _learner(True), _learner(True)
    applied, last = learner.meta_train_steps(stack)
    assert applied == 7 and not bool(last["finite"])
    assert int(learner.optimizer.iterations) == 7
    reference.meta_train_steps(tuple(x[:7] for x in stack))
    assert _max_difference(learner, reference) == 0.0


def test_training_with_many_steps_per_call_matches_one_per_call(tmp_path):
    """The trainer's quiet runs (between summary/print/save points) give the same run."""
    from maml_tf import experiment
    from maml_tf.config import ExperimentConfig

    weights, lines = {}, {}
    for steps in (1, 0):  # 0: automatic, up to 100 iterations per call for the sinusoid
        cfg = ExperimentConfig(datasource="sinusoid", norm="None", update_batch_size=10,
                               update_lr=0.01, metatrain_iterations=1250, seed=3,
                               logdir=str(tmp_path / f"steps{steps}"), steps_per_call=steps,
                               checkpoint_interval=300)
        logs = []
        result = experiment.run(cfg, build_task_sources, log=logs.append)
        assert result["last_itr"] == 1249
        lines[steps] = [line for line in logs if line.startswith("Iteration")]
        reader = tf.train.load_checkpoint(os.path.join(cfg.experiment_dir, "ckpt-1249"))
        weights[steps] = {name: reader.get_tensor(name)
                          for name in reader.get_variable_to_shape_map()
                          if name.startswith("model/")}
        assert sorted(os.listdir(cfg.experiment_dir)).count("ckpt-900.index") == 1
    assert len(lines[0]) == len(lines[1]) == 1  # "Iteration 1000: pre, post"
    np.testing.assert_allclose(*(np.array(l[0].split(": ")[1].split(", "), float)
                                 for l in lines.values()), rtol=1e-3)
    # One XLA program for the whole loop (Adam included) rounds a little differently from
    # XLA gradients plus a separate Adam update; Adam carries that along 1250 steps.
    for name in weights[1]:
        np.testing.assert_allclose(weights[0][name], weights[1][name], rtol=1e-3, atol=3e-4,
                                   err_msg=name)


def test_intra_op_threads_one_for_the_sinusoid_and_task_groups_only_unless_given():
    from maml_tf.config import ExperimentConfig
    assert ExperimentConfig(datasource="sinusoid").intra_op_parallelism == 1
    assert ExperimentConfig(datasource="omniglot", task_groups=1).intra_op_parallelism == 0
    assert ExperimentConfig(datasource="omniglot", conv=False).intra_op_parallelism == 0
    assert ExperimentConfig(datasource="sinusoid", distribute="mirrored",
                            num_cpu_devices=2).intra_op_parallelism == 0
    assert ExperimentConfig(datasource="sinusoid", intra_op_threads=0).intra_op_parallelism == 0
    assert ExperimentConfig(datasource="omniglot", intra_op_threads=3).intra_op_parallelism == 3


def test_intra_op_threads_are_set_before_the_first_op_and_kept_after_it():
    """A fresh process takes the setting; once TensorFlow has run an op it cannot change,
    and the helper says so and goes on (it changes speed only)."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = ("import maml_tf, tensorflow as tf\n"
              "from maml_tf.runtime import set_intra_op_threads\n"
              "print(set_intra_op_threads(1))\n"
              "print(float(tf.reduce_sum(tf.ones(3))))\n"
              "print(set_intra_op_threads(2))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "3.0", "1"]
    assert "keeping its 1 intra-op threads instead of 2" in done.stderr
