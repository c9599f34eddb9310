"""Fast paths of the conv net change the speed, never the maths.

Every conv path of ``ConvNet`` is held to the per-task path (the one the float64
finite-difference checks of test_maml_math.py cover), meta-gradient by meta-gradient, for
second and first order, each normalisation and with and without max-pooling. (The
hand-written batch-norm backward is held to autodiff in test_norm_gradient.py.)
"""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import maml
from maml_tf import norm as norm_lib
from maml_tf.maml import InnerLoopSpec
from maml_tf.conv_paths import grouped_conv_gradients_available
from maml_tf.models import ConvNet


def _meta_gradients(conv_impl, norm, max_pool, first_order, fused=False):
    """Meta-gradients of a tiny conv net (3 tasks, 3-way 2-shot, two inner steps) whose
    normalisation parameters are random (zeros and ones would hide a mis-ordered tiling)."""
    tf.keras.utils.set_random_seed(7)
    model = ConvNet(3, img_size=16 if max_pool else 8, channels=2, num_filters=3,
                    max_pool=max_pool, flatten_head=max_pool, norm=norm, conv_impl=conv_impl,
                    fused_batch_norm=fused)
    assert model.conv_impl == conv_impl and model.fused_batch_norm == fused
    rng = np.random.default_rng(7)
    for variable in model.shared.values():
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    labels = tf.constant(np.tile(np.eye(3, dtype=np.float32), (3, 2, 1)))
    inputs = rng.uniform(size=(2, 3, 6, model.dim_input)).astype(np.float32)
    batch = (tf.constant(inputs[0]), labels, tf.constant(inputs[1]), labels)
    spec = InnerLoopSpec(update_lr=0.4, num_updates=2, classification=True,
                         update_batch_size=2, first_order=first_order)
    grads, _ = maml.meta_gradients(model, batch, spec)  # eager: no tracing, tiny shapes
    return [v.name for v in model.trainable_variables], [g.numpy() for g in grads]


@pytest.mark.parametrize("first_order", [False, True], ids=["SO", "FO"])
@pytest.mark.parametrize("max_pool", [False, True], ids=["strided", "max_pool"])
@pytest.mark.parametrize("norm", norm_lib.NORMS)
def test_every_fast_conv_path_gives_the_per_task_meta_gradient(norm, max_pool, first_order):
    available, reason = grouped_conv_gradients_available("float32")
    if not available:  # e.g. TF_ENABLE_ONEDNN_OPTS=0: only the per-task path exists
        pytest.skip(f"grouped-convolution gradients unavailable here: {reason}")
    names, reference = _meta_gradients("per_task", norm, max_pool, first_order)
    # Near-zero elements differ by round-off only: compare at the scale of the whole
    # meta-gradient. (Conv biases before batch norm are left out of the forward pass and get
    # exact zeros on every path: maml_tf.norm.cancels_bias.)
    scale = max(np.abs(r).max() for r in reference)
    assert np.abs(reference[names.index("conv1")]).max() > 1e-4 * scale  # not vanishing
    paths = [("grouped", False), ("folded", False)]
    if norm == "batch_norm":   # the fused kernel, first and second order
        paths.append(("folded", True))
    for impl, fused in paths:
        _, grads = _meta_gradients(impl, norm, max_pool, first_order, fused)
        for name, fast, plain in zip(names, grads, reference):
            np.testing.assert_allclose(fast, plain, rtol=2e-3, atol=1e-5 * scale,
                                       err_msg=f"{impl}{' fused' if fused else ''}: {name}")


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "graph"])
def test_fused_batch_norm_is_the_exact_form(traced):
    """Output, gradient and second derivative (a cotangent of the input gradient carried
    back to the input and the upstream gradient, as second-order MAML does; batch norm's
    gradients do not depend on its offset), eagerly and traced (where oneDNN's kernels run:
    the second derivative reads the kernel's Bessel-corrected batch variance back)."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(1.5, 0.7, size=(6, 9, 9, 8)).astype(np.float32))
    offset = tf.constant(rng.normal(size=8).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(6, 9, 9, 8)).astype(np.float32))
    cotangent = tf.constant(rng.normal(size=(6, 9, 9, 8)).astype(np.float32))

    def derivatives(fn):
        with tf.GradientTape() as outer:
            outer.watch([x, offset, upstream])
            with tf.GradientTape() as tape:
                tape.watch([x, offset])
                y = fn(x, offset)
                loss = tf.reduce_sum(y * upstream)
            grads = tape.gradient(loss, [x, offset])
            second = tf.reduce_sum(grads[0] * cotangent) + tf.reduce_sum(tf.square(grads[1]))
        return [y, *grads, *outer.gradient(second, [x, upstream])]

    results = []
    for fn in (norm_lib.fused_batch_norm,
               lambda a, b: norm_lib.batch_norm_over(a, b, (0, 1, 2))):
        compute = tf.function(derivatives) if traced else derivatives
        results.append([value.numpy() for value in compute(fn)])
    for fused, exact in zip(*results):
        np.testing.assert_allclose(fused, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    # only where it runs as the exact form's drop-in: batch norm, float32, the folded path
    assert not ConvNet(3, 8, 1, 3, norm="layer_norm", fused_batch_norm=True).fused_batch_norm
    assert not ConvNet(3, 8, 1, 3, dtype="float64", fused_batch_norm=True).fused_batch_norm
    available, _ = grouped_conv_gradients_available("float32")
    assert ConvNet(3, 8, 1, 3, fused_batch_norm=True).fused_batch_norm == available


def test_main_builds_the_fused_batch_norm_where_it_measured_faster():
    """main.py's model: fused batch norm for MiniImagenet (max-pooling) in both orders and
    for Omniglot in second order only."""
    from data_generators.factory import model_dimensions
    from maml_tf import experiment
    from maml_tf.config import ExperimentConfig
    available, _ = grouped_conv_gradients_available("float32")
    mini = dict(datasource="miniimagenet", meta_batch_size=4, num_updates=5, update_lr=0.01,
                num_filters=32, max_pool=True)
    omniglot = dict(datasource="omniglot", meta_batch_size=4, update_lr=0.4)
    for flags, stop_grad, expected in ((mini, True, True), (mini, False, True),
                                       (omniglot, True, False), (omniglot, False, True)):
        cfg = ExperimentConfig(stop_grad=stop_grad, **flags)
        learner = experiment.build_learner(cfg, model_dimensions(cfg))
        assert learner.model.fused_batch_norm == (expected and available), (flags, stop_grad)
        assert learner.spec.first_order == stop_grad


def test_a_bias_before_batch_norm_cancels_and_only_there():
    """The premise of leaving the conv/dense bias out before batch norm (float64)."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 4, 5, 5, 3)))
    bias, offset = tf.constant(rng.normal(size=3)), tf.constant(rng.normal(size=3))
    assert norm_lib.cancels_bias("batch_norm")
    np.testing.assert_allclose(norm_lib.batch_norm(x + bias, offset),
                               norm_lib.batch_norm(x, offset), atol=1e-12)
    assert not norm_lib.cancels_bias("layer_norm") and not norm_lib.cancels_bias("None")
    scale = tf.ones(3, tf.float64)
    moved = norm_lib.layer_norm(x + bias, offset, scale) - norm_lib.layer_norm(x, offset, scale)
    assert np.abs(moved.numpy()).max() > 1e-2   # layer norm keeps it: it must be added


@pytest.mark.parametrize("norm", ["batch_norm", "None"])
@pytest.mark.parametrize("conv", [True, False], ids=["conv", "fc"])
def test_cancelled_biases_get_exact_zero_gradients_and_nothing_else_changes(norm, conv):
    """With batch norm the biases before it are left out of the forward pass: their inner
    and meta-gradients are tensors of exact zeros (not None: the optimizer and the inner
    step treat every weight alike), the outputs do not depend on them, and every other
    weight still learns. Without normalisation the same biases are used."""
    from maml_tf.models import FullyConnectedNet
    tf.keras.utils.set_random_seed(5)
    if conv:
        model = ConvNet(3, img_size=8, channels=1, num_filters=3, norm=norm,
                        conv_impl="per_task", dtype="float64")
        hidden_biases = ["b1", "b2", "b3", "b4"]
    else:
        model = FullyConnectedNet(4, 3, (6, 5), norm=norm, dtype="float64")
        hidden_biases = ["b1", "b2"]
    rng = np.random.default_rng(5)
    labels = tf.constant(np.tile(np.eye(3), (2, 2, 1)))
    inputs = tf.constant(rng.uniform(size=(2, 2, 6, model.dim_input)))
    batch = (inputs[0], labels, inputs[1], labels)
    spec = InnerLoopSpec(update_lr=0.4, num_updates=2, classification=True,
                         update_batch_size=2)
    names = [v.name for v in model.trainable_variables]
    before = model.forward(inputs[1]).numpy()
    for name in hidden_biases:
        model.adapted[name].assign(rng.normal(size=model.adapted[name].shape))
    moved = np.abs(model.forward(inputs[1]).numpy() - before).max()
    meta, _ = maml.meta_gradients(model, batch, spec)
    pre, _ = maml.pretrain_gradients(model, batch, spec)
    for name, grad_meta, grad_pre in zip(names, meta, pre):
        assert grad_meta is not None and grad_pre is not None, name
        cancelled = norm == "batch_norm" and name in hidden_biases
        for grad in (grad_meta.numpy(), grad_pre.numpy()):
            if cancelled:
                assert np.all(grad == 0.0), name
            else:
                assert np.abs(grad).max() > 0.0, name
    if norm == "batch_norm":
        assert moved == 0.0
    else:
        assert moved > 1e-3
