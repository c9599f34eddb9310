"""Importing the original's TF1 checkpoints, and ``--test_seed``.

The reference checkpoints are written here the way the original wrote them: a TF1 graph
(``tf.compat.v1``) whose variables are created as the original's ``construct_*_weights`` and
``forward_*`` created them inside ``tf.variable_scope('model')`` (unnamed ``tf.Variable``
biases, batch-norm offsets in scopes ``0``, ``1``, ...), saved with ``tf.compat.v1.train.Saver``.
The same graph computes the original forward pass and one inner step, which the imported
model must reproduce.
"""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_generators.factory import build_task_sources, model_dimensions
from maml_tf import experiment, tf1_import
from maml_tf.checkpoint import CheckpointError, IterationCheckpointer
from maml_tf.config import ExperimentConfig
from maml_tf.maml import InnerLoopSpec, evaluate_adaptation
from maml_tf.models import ConvNet, FullyConnectedNet

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = Path(os.environ.get("MAML_AUTHORS_CHECKPOINT", ROOT.parent / "shared" / "reference"
                              / "authors_checkpoint" / "miniimagenet1shot" / "model59000"))
V1 = tf.compat.v1
UPDATE_LR = 0.1


def quiet(*_):
    pass


def _batch_norm(x, scope):
    """tf.contrib.layers.batch_norm as the original called it: batch statistics, beta only."""
    with V1.variable_scope(scope, reuse=V1.AUTO_REUSE):
        beta = V1.get_variable("beta", [x.shape[-1]], initializer=V1.zeros_initializer())
    mean, variance = tf.nn.moments(x, list(range(x.shape.rank - 1)))
    return tf.nn.batch_normalization(x, mean, variance, beta, None, 1e-3)


def _conv_forward(inp, w, img, channels):
    """The original forward_conv with max_pool and the MiniImagenet (flattened) head."""
    hidden = tf.reshape(inp, [-1, img, img, channels])
    for i in range(4):
        hidden = tf.nn.conv2d(hidden, w[f"conv{i + 1}"], [1, 1, 1, 1], "SAME") + w[f"b{i + 1}"]
        hidden = tf.nn.relu(_batch_norm(hidden, str(i)))
        hidden = tf.nn.max_pool2d(hidden, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    hidden = tf.reshape(hidden, [-1, int(np.prod(hidden.shape[1:]))])  # NHWC order
    return tf.matmul(hidden, w["w5"]) + w["b5"]


def _fc_forward(inp, w, layers):
    """The original forward_fc, with its normalisation scopes '0', '2', '3', ..."""
    hidden = tf.nn.relu(_batch_norm(tf.matmul(inp, w["w1"]) + w["b1"], "0"))
    for i in range(1, layers - 1):
        hidden = tf.matmul(hidden, w[f"w{i + 1}"]) + w[f"b{i + 1}"]
        hidden = tf.nn.relu(_batch_norm(hidden, str(i + 1)))
    return tf.matmul(hidden, w[f"w{layers}"]) + w[f"b{layers}"]


def write_original(prefix, kind, seed=0, num_filters=4, img=84, channels=3, classes=5,
                   sizes=(12, 8, 6, 5, 4), named_fc=False, save_all=False, drop=(),
                   extra=None):
    """Writes a checkpoint in the original's layout; returns the inputs and what the original
    graph computes on them: outputs, support loss and query loss after one inner step."""
    rng = np.random.default_rng(seed)
    dim_input = img * img * channels if kind == "conv" else sizes[0]
    x = {"a": rng.uniform(0, 1, (classes, dim_input)).astype(np.float32),
         "b": rng.uniform(0, 1, (classes, dim_input)).astype(np.float32)}
    labels = np.eye(classes, dtype=np.float32)[rng.permutation(classes)]
    graph = tf.Graph()
    with graph.as_default():
        def value(*shape, scale=0.3):
            return (scale * rng.standard_normal(shape)).astype(np.float32)

        with V1.variable_scope("model"):
            w = {}
            if kind == "conv":  # construct_conv_weights: get_variable + unnamed biases
                for i in range(1, 5):
                    w[f"conv{i}"] = V1.get_variable(
                        f"conv{i}", initializer=value(3, 3, channels if i == 1 else num_filters,
                                                      num_filters))
                    w[f"b{i}"] = tf.Variable(value(num_filters))
                w["w5"] = V1.get_variable("w5", initializer=value(num_filters * 25, classes))
                w["b5"] = tf.Variable(value(classes), name="b5")
                forward = lambda inp, weights: _conv_forward(inp, weights, img, channels)  # noqa
            else:  # construct_fc_weights: unnamed tf.Variables w1, b1, w2, b2, ...
                dims = list(sizes) + [classes]
                for i in range(1, len(dims)):
                    w[f"w{i}"] = tf.Variable(value(dims[i - 1], dims[i]),
                                             name=f"w{i}" if named_fc else None)
                    w[f"b{i}"] = tf.Variable(value(dims[i]), name=f"b{i}" if named_fc else None)
                forward = lambda inp, weights: _fc_forward(inp, weights, len(dims) - 1)  # noqa
            inputa, inputb = tf.constant(x["a"]), tf.constant(x["b"])
            out_a = forward(inputa, w)
            loss_a = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=labels,
                                                                           logits=out_a))
            grads = dict(zip(w, tf.gradients(loss_a, list(w.values()))))
            fast = {k: w[k] - UPDATE_LR * grads[k] for k in w}
            loss_b = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(
                labels=labels, logits=forward(inputb, fast)))
            betas = [v for v in V1.trainable_variables() if v.name.endswith("/beta:0")]
            if save_all:  # what a fork saving every variable would add
                for scope in {v.name.split("/")[1] for v in betas}:
                    with V1.variable_scope(scope):
                        V1.get_variable("moving_mean", [betas[0].shape[0]], trainable=False)
                        V1.get_variable("moving_variance", [betas[0].shape[0]], trainable=False)
        if save_all:  # Adam's slots and beta1_power/beta2_power
            V1.train.AdamOptimizer(0.001).minimize(loss_b)
        added = V1.Variable(np.ones(extra[1], np.float32), name=extra[0]) if extra else None
        with V1.Session(graph=graph) as sess:
            sess.run(V1.global_variables_initializer())
            for beta in betas:  # non-zero offsets, so a wrong mapping shows
                sess.run(beta.assign(value(*beta.shape, scale=0.5)))
            outputs = sess.run({"out_a": out_a, "loss_a": loss_a, "loss_b": loss_b})
            variables = V1.global_variables() if save_all else V1.trainable_variables()
            saved = {v.name[:-2]: v for v in variables if v.name[:-2] not in drop}
            if added is not None:
                saved[extra[0]] = added
            values = {name: sess.run(v) for name, v in saved.items()}
            V1.train.Saver(saved).save(sess, str(prefix), write_meta_graph=False)
    return dict(outputs, x=x, labels=labels, values=values)


def conv_model(num_filters=4, classes=5):
    return ConvNet(classes, img_size=84, channels=3, num_filters=num_filters, max_pool=True,
                   flatten_head=True, norm="batch_norm")


def fc_model(sizes=(12, 8, 6, 5, 4), classes=5):
    return FullyConnectedNet(sizes[0], classes, sizes[1:], norm="batch_norm")


def assert_reproduces_original(model, reference):
    """Same logits, support loss and query loss after one inner step as the TF1 graph."""
    x, labels = reference["x"], reference["labels"]
    np.testing.assert_allclose(model(tf.constant(x["a"])).numpy(), reference["out_a"],
                               rtol=1e-4, atol=1e-4)
    spec = InnerLoopSpec(update_lr=UPDATE_LR, num_updates=1, classification=True,
                         update_batch_size=1)
    batch = tuple(tf.constant(v[None]) for v in (x["a"], labels, x["b"], labels))
    losses = evaluate_adaptation(model, batch, spec, 1)["losses"].numpy()[0]
    np.testing.assert_allclose(losses, [reference["loss_a"], reference["loss_b"]], rtol=1e-4)


def test_conv_checkpoint_imports_with_identical_outputs(tmp_path):
    reference = write_original(tmp_path / "model700", "conv")
    model = conv_model()
    result = tf1_import.load_into_model(model, str(tmp_path / "model700"), log=quiet)
    assert result["assigned"]["b3"] == "model/Variable_2" and result["skipped"] == []
    assert result["assigned"]["norm4_offset"] == "model/3/beta"
    weights = {**model.adapted, **model.shared}
    for ours, theirs in result["assigned"].items():
        np.testing.assert_array_equal(weights[ours].numpy(), reference["values"][theirs])
    assert_reproduces_original(model, reference)
    # The flattened head's rows are in NHWC order; channel-major (NCHW) rows would not fit.
    w5 = model.w5.numpy()
    model.w5.assign(w5.reshape(5, 5, 4, 5).transpose(2, 0, 1, 3).reshape(100, 5))
    with pytest.raises(AssertionError):
        assert_reproduces_original(model, reference)


@pytest.mark.parametrize("named_fc", [False, True], ids=["original_unnamed", "named_w1_b1"])
def test_fc_checkpoint_imports_with_identical_outputs(tmp_path, named_fc):
    reference = write_original(tmp_path / "model5", "fc", named_fc=named_fc)
    model = fc_model()
    assigned = tf1_import.load_into_model(model, str(tmp_path / "model5"), log=quiet)["assigned"]
    if not named_fc:  # w1, b1, w2, ... were TF1's Variable, Variable_1, Variable_2, ...
        assert assigned["w3"] == "model/Variable_4" and assigned["b5"] == "model/Variable_9"
    # forward_fc's quirk: the hidden layers' norm scopes are 0, 2, 3, 4
    assert [assigned[f"norm{j}_offset"] for j in range(1, 5)] == [
        "model/0/beta", "model/2/beta", "model/3/beta", "model/4/beta"]
    assert_reproduces_original(model, reference)


def test_moving_statistics_and_adam_state_are_skipped(tmp_path):
    reference = write_original(tmp_path / "model3", "conv", save_all=True)
    model = conv_model()
    logs = []
    skipped = tf1_import.load_into_model(model, str(tmp_path / "model3"), log=logs.append)[
        "skipped"]
    assert {"beta1_power", "beta2_power", "model/0/moving_mean", "model/3/moving_variance",
            "model/conv1/Adam", "model/Variable_3/Adam_1", "model/2/beta/Adam"} <= set(skipped)
    assert len(skipped) == 2 + 8 + 2 * 14 and "Skipped 38 variables" in logs[0]
    assert_reproduces_original(model, reference)


@pytest.mark.parametrize("change, message", [
    (dict(num_filters=3), r"model/conv1 has shape \[3, 3, 3, 3\] but conv1 needs \[3, 3, 3, 4\]"),
    (dict(drop=("model/Variable_1",)), r"model/Variable_1 \(for b2, shape \[4\]\) is missing"),
    (dict(extra=("model/Variable_4", [4])), r"model/Variable_4 \[4\] matches no weight"),
    (dict(classes=4), r"model/b5 has shape \[4\] but b5 needs \[5\]"),
])
def test_a_mismatched_checkpoint_names_the_variable(tmp_path, change, message):
    write_original(tmp_path / "model1", "conv", **change)
    model = conv_model()
    before = model.conv2.numpy().copy()
    with pytest.raises(CheckpointError, match=message) as error:
        tf1_import.load_into_model(model, str(tmp_path / "model1"), log=quiet)
    assert "--num_filters" in str(error.value)
    np.testing.assert_array_equal(model.conv2.numpy(), before)  # nothing half-imported


def test_bad_prefixes_are_named(tmp_path):
    write_original(tmp_path / "run" / "model2", "fc")
    for given, message in [(tmp_path / "run", "is a directory; .*model2"),
                           (tmp_path / "run" / "model2.index", "without the suffix"),
                           (tmp_path / "run" / "model9", "no checkpoint there")]:
        with pytest.raises(CheckpointError, match=message):
            tf1_import.load_into_model(fc_model(), str(given), log=quiet)
    with pytest.raises(CheckpointError, match="--tf1_iteration"):
        tf1_import.iteration_from_prefix(str(tmp_path / "renamed"))
    assert tf1_import.iteration_from_prefix("a/b/model59000") == 59000


# ---------------------------------------------------- test mode, --test_seed, export, compare

def write_tiny_miniimagenet(root, seed=0):
    """train: 5 classes x 16 images (K + 15 must fit), test: 5 x 4 random 84x84 JPEGs."""
    rng = np.random.default_rng(seed)
    for split, images in (("train", 16), ("test", 4)):
        for c in range(5):
            folder = root / split / f"n{split[:2]}{c:06d}"
            folder.mkdir(parents=True)
            for i in range(images):
                pixels = rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg")
    return root


def mini_cfg(tmp_path, **overrides):
    values = dict(datasource="miniimagenet", miniimagenet_folder=str(tmp_path / "mini"),
                  num_classes=5, meta_batch_size=4, update_batch_size=1, update_lr=0.01,
                  num_updates=1, num_filters=4, max_pool=True, logdir=str(tmp_path / "logs"),
                  train=False, test_set=True, num_test_tasks=4, test_batch_size=4,
                  task_groups=1)  # one graph instead of four: less tracing, the same values
    values.update(overrides)
    return ExperimentConfig(**values)


def test_imported_checkpoint_runs_test_mode_with_test_seeds_and_export(tmp_path):
    write_tiny_miniimagenet(tmp_path / "mini")
    write_original(tmp_path / "tf1" / "model1234", "conv")
    cfg = mini_cfg(tmp_path)
    path = tf1_import.import_checkpoint(cfg, str(tmp_path / "tf1" / "model1234"),
                                      model_dimensions(cfg), log=quiet)
    assert path == os.path.join(cfg.experiment_dir, "ckpt-1234")
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        tf1_import.import_checkpoint(cfg, str(tmp_path / "tf1" / "model1234"),
                                      model_dimensions(cfg), log=quiet)

    logs = []
    default = experiment.run(cfg, build_task_sources, log=logs.append)
    assert any("ckpt-1234" in line for line in logs)
    seeded = experiment.run(mini_cfg(tmp_path, test_seed=3,
                                     export_dir=str(tmp_path / "exported")),
                            build_task_sources, log=quiet)
    assert os.path.basename(default["csv"]) == "test_ubs1_stepsize0.01.csv"
    assert os.path.basename(seeded["csv"]) == "test_ubs1_stepsize0.01_testseed3.csv"
    assert os.path.exists(default["csv"]) and default["values"].shape == (4, 11)
    with open(seeded["pkl"], "rb") as f:
        saved = pickle.load(f)
    assert saved["test_seed"] == 3 and saved["iteration"] == 1234
    assert not np.array_equal(default["values"], seeded["values"])
    assert (tmp_path / "exported" / "saved_model.pb").exists()


def test_test_seed_changes_the_tasks(tmp_path):
    write_tiny_miniimagenet(tmp_path / "mini")
    first = {seed: build_task_sources(mini_cfg(tmp_path, test_seed=seed)).test(6)
             for seed in (-1, 3)}
    assert not np.array_equal(first[-1].inputa, first[3].inputa)
    repeat = build_task_sources(mini_cfg(tmp_path, test_seed=3)).test(6)
    np.testing.assert_array_equal(repeat.inputa, first[3].inputa)
    np.testing.assert_array_equal(repeat.labelb, first[3].labelb)
    sine = {seed: build_task_sources(ExperimentConfig(train=False, test_seed=seed)).test(2)
            for seed in (-1, 1, 7)}
    np.testing.assert_array_equal(sine[-1].inputa, sine[1].inputa)  # the original's seed is 1
    assert not np.array_equal(sine[-1].inputa, sine[7].inputa)


def run_script(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--test_seed=-2"], "--test_seed must be -1"),
    (["--test_seed=5"], "--test_seed only applies to test mode"),
])
def test_test_seed_is_validated(tmp_path, args, message):
    done = run_script("main.py", f"--logdir={tmp_path}", *args)
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]


MINI_1SHOT = ["--datasource=miniimagenet", "--num_classes=5", "--meta_batch_size=4",
              "--update_batch_size=1", "--update_lr=0.01", "--num_updates=5", "--max_pool=True"]


@pytest.mark.skipif(not Path(str(AUTHORS) + ".index").exists(),
                    reason=f"the authors' checkpoint is not at {AUTHORS}")
def test_the_authors_checkpoint_imports(tmp_path):
    done = run_script("import_tf1_checkpoint.py", f"--tf1_checkpoint={AUTHORS}", *MINI_1SHOT,
                      "--num_filters=32", f"--logdir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Imported 14 variables" in done.stdout
    cfg = ExperimentConfig(datasource="miniimagenet", meta_batch_size=4, update_batch_size=1,
                           update_lr=0.01, num_updates=5, num_filters=32, max_pool=True,
                           logdir=str(tmp_path), train=False, test_set=True)
    assert cfg.experiment_dir.endswith("cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32"
                                       "maxpoolbatchnorm")
    learner = experiment.build_learner(cfg, model_dimensions(cfg))
    checkpointer = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                         optimizer=learner.optimizer)
    assert checkpointer.restore() == 59000
    reader = tf.train.load_checkpoint(str(AUTHORS))
    weights = {**learner.model.adapted, **learner.model.shared}
    for ours, theirs in tf1_import.original_names(learner.model).items():
        np.testing.assert_array_equal(weights[ours].numpy(), reader.get_tensor(theirs))
    # With main.py's default --num_filters=64 it fails, naming the variables.
    wrong = run_script("import_tf1_checkpoint.py", f"--tf1_checkpoint={AUTHORS}", *MINI_1SHOT,
                       f"--logdir={tmp_path / 'wrong'}")
    assert wrong.returncode == 2
    assert "model/conv1 has shape [3, 3, 3, 32] but conv1 needs [3, 3, 3, 64]" in wrong.stderr
