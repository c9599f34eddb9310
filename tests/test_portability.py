"""The same numbers on every CPU setting: oneDNN on or off, grouped/folded or per-task convs.

TensorFlow differentiates the task-batched (grouped) convolutions on CPU only through oneDNN,
which it enables by default only on some CPUs. Each run below is a fresh process, because
oneDNN is chosen when TensorFlow loads: ``TF_ENABLE_ONEDNN_OPTS=0`` forces the fallback
(per-task convolutions) on any machine, ``=1`` the fast path. Both must train to the same
weights, and the fallback must say so once.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from maml_tf import runtime
from maml_tf.conv_paths import AUTO_CONV_IMPL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FALLBACK_NOTE = "the conv net uses one convolution per task instead"

# The meta-gradients of a small batch-normalised conv net (second order, two inner steps) on a
# fixed batch, saved to an .npz file, and the path the model chose on stdout. Gradients, not
# weights after Adam steps: Adam's first steps are +-learning rate whatever the gradient's
# size, so round-off in near-zero gradients would show up as full-size weight differences.
META_GRADIENTS = textwrap.dedent("""
    import sys
    import numpy as np
    import maml_tf
    import tensorflow as tf
    from maml_tf import maml
    from maml_tf.maml import InnerLoopSpec
    from maml_tf.models import ConvNet

    tf.keras.utils.set_random_seed(4)
    model = ConvNet(3, img_size=12, channels=1, num_filters=6, norm="batch_norm")
    spec = InnerLoopSpec(0.4, 2, classification=True, update_batch_size=2)
    rng = np.random.default_rng(4)
    labels = tf.constant(np.tile(np.eye(3, dtype=np.float32), (4, 2, 1)))
    x = tf.constant(rng.uniform(size=(2, 4, 6, 144)).astype(np.float32))
    step = tf.function(lambda b: maml.meta_gradients(model, b, spec))
    grads, metrics = step((x[0], labels, x[1], labels))
    names = [v.name for v in model.trainable_variables]
    np.savez(sys.argv[1], post_loss=metrics["post_loss"].numpy(),
             **{n: g.numpy() for n, g in zip(names, grads)})
    print("conv_impl", model.conv_impl)
""")


def _run(args, onednn, **kwargs):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, PYTHONPATH=ROOT)
    return subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=900, **kwargs)


def _assert_close(a: dict, b: dict):
    """Equal up to float32 round-off, at the scale of all values (conv biases before batch
    norm have an analytically zero gradient: element-wise they are pure round-off)."""
    assert set(a) == set(b)
    scale = max(np.abs(v).max() for v in a.values())
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=2e-3, atol=1e-4 * scale,
                                   err_msg=name)


def test_prepare_tensorflow_respects_the_users_choice():
    for value in ("0", "1"):
        out = subprocess.run(
            [sys.executable, "-c", "import maml_tf, os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"],
            env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS=value, PYTHONPATH=ROOT),
            capture_output=True, text=True, timeout=300)
        assert out.stdout.strip() == value, out.stderr
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, "-c", "import maml_tf, os; "
                          "print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"],
                         env=dict(env, PYTHONPATH=ROOT), capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "1"
    assert "oneDNN custom operations" not in out.stderr  # TensorFlow's load-time chatter


def test_quiet_import_replays_other_stderr_lines(capfd):
    with runtime._stderr_without(("benign",)):
        os.write(2, b"a benign line\nreal problem\n")
    assert capfd.readouterr().err == "real problem\n"


def test_conv_meta_gradients_agree_with_onednn_off_and_on(tmp_path):
    weights, outputs = {}, {}
    for onednn in ("0", "1"):
        path = tmp_path / f"onednn{onednn}.npz"
        out = _run([sys.executable, "-c", META_GRADIENTS, str(path)], onednn)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Traceback" not in out.stderr
        weights[onednn] = dict(np.load(path))
        outputs[onednn] = out
    assert "conv_impl per_task" in outputs["0"].stdout
    assert outputs["0"].stderr.count(FALLBACK_NOTE) == 1  # announced, once
    assert "TF_ENABLE_ONEDNN_OPTS=0" in outputs["0"].stderr
    # oneDNN on: the fast path "auto" stands for, silently
    assert f"conv_impl {AUTO_CONV_IMPL}\n" in outputs["1"].stdout
    assert FALLBACK_NOTE not in outputs["1"].stderr
    _assert_close(weights["0"], weights["1"])
    assert len(weights["0"]) == 1 + 5 + 5 + 4  # the loss, conv1-4 + w5, b1-b5, 4 offsets
    assert np.abs(weights["0"]["conv1"]).max() > 1e-3  # a real gradient, not zeros


def test_explicit_grouped_paths_without_gradients_are_a_clear_error():
    script = ("import maml_tf\nfrom maml_tf.models import ConvNet\n"
              "for impl in ('grouped', 'folded'):\n"
              "    try:\n        ConvNet(5, conv_impl=impl)\n"
              "    except ValueError as e:\n        print('ValueError:', e)\n")
    out = _run([sys.executable, "-c", script], "0")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.count("ValueError: ") == 2
    for impl in ("grouped", "folded"):
        assert f"conv_impl='{impl}' cannot be used" in out.stdout


def test_float64_models_take_the_per_task_path_silently(capfd):
    from maml_tf.models import ConvNet
    model = ConvNet(3, img_size=8, num_filters=2, dtype="float64")
    assert model.conv_impl == "per_task"
    assert FALLBACK_NOTE not in capfd.readouterr().err


def _sine_flags(logdir):
    return [sys.executable, "main.py", "--datasource=sinusoid", "--norm=None",
            "--update_batch_size=10", "--metatrain_iterations=400", "--seed=2",
            f"--logdir={logdir}"]


def _checkpoint_weights(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/")}


def test_seeded_training_repeats_exactly_on_one_machine(tmp_path):
    """Same machine, same seed: identical weights (across CPU models only up to round-off)."""
    runs = []
    for i in range(2):
        out = _run(_sine_flags(tmp_path / f"run{i}"), os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"))
        assert out.returncode == 0, out.stderr[-3000:]
        (ckpt,) = list((tmp_path / f"run{i}").glob("*/ckpt-399.index"))
        runs.append(_checkpoint_weights(str(ckpt)[:-len(".index")]))
    assert len(runs[0]) >= 6
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)

