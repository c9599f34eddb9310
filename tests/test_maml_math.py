"""The maths of the algorithm: meta-gradients against finite differences and definitions.

float64 and tanh networks: central differences on ReLU nets are meaningless at the kinks.
"""
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import core, maml
from maml_tf.maml import InnerLoopSpec
from maml_tf.models import ConvNet, FullyConnectedNet

DT = "float64"


def _regression_batch(rng, tasks=3, k=4, dim_in=2):
    xa, xb = rng.normal(size=(tasks, k, dim_in)), rng.normal(size=(tasks, k, dim_in))
    ya, yb = rng.normal(size=(tasks, k, 1)), rng.normal(size=(tasks, k, 1))
    return tuple(tf.constant(v, tf.float64) for v in (xa, ya, xb, yb))


def _classification_batch(rng, tasks=2, n=3, k=2, img=8):
    labels = np.tile(np.eye(n), (1, k, 1)).reshape(1, n * k, n).repeat(tasks, 0)
    xa, xb = rng.uniform(size=(tasks, n * k, img * img)), rng.uniform(size=(tasks, n * k, img * img))
    return tuple(tf.constant(v, tf.float64) for v in (xa, labels, xb, labels))


def _meta_loss(model, batch, spec):
    return maml.meta_objective(model, batch, spec)[0]


def _finite_difference_check(model, batch, spec, rng, eps=1e-5, directions=3):
    """Directional derivatives of the meta-loss: analytic (meta_gradients) vs central FD."""
    variables = model.trainable_variables
    grads, _ = maml.meta_gradients(model, batch, spec)
    originals = [v.numpy().copy() for v in variables]
    errors = []
    for _ in range(directions):
        direction = [rng.normal(size=v.shape) for v in variables]
        norm = np.sqrt(sum(np.sum(d ** 2) for d in direction))
        direction = [d / norm for d in direction]
        analytic = sum(np.sum(g.numpy() * d) for g, d in zip(grads, direction))
        values = []
        for sign in (1.0, -1.0):
            for v, o, d in zip(variables, originals, direction):
                v.assign(o + sign * eps * d)
            values.append(float(_meta_loss(model, batch, spec)))
        for v, o in zip(variables, originals):
            v.assign(o)
        numeric = (values[0] - values[1]) / (2 * eps)
        errors.append(abs(analytic - numeric) / max(abs(numeric), 1e-8))
    return max(errors)


@pytest.mark.parametrize("num_updates", [1, 3])
def test_second_order_fc_matches_finite_differences(num_updates):
    tf.keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    model = FullyConnectedNet(2, 1, (6, 5), norm="None", dtype=DT, activation=tf.tanh)
    # Larger weights than the original's std 0.01 so second-order terms matter.
    for v in model.trainable_variables:
        v.assign(rng.normal(size=v.shape) * 0.7)
    batch = _regression_batch(rng)
    spec = InnerLoopSpec(update_lr=0.3, num_updates=num_updates, classification=False)
    assert _finite_difference_check(model, batch, spec, rng) < 1e-6
    # The same check must fail for first-order MAML: it ignores the second-order term.
    fo_spec = InnerLoopSpec(update_lr=0.3, num_updates=num_updates, classification=False,
                            first_order=True)
    fo_grads, _ = maml.meta_gradients(model, batch, fo_spec)
    so_grads, _ = maml.meta_gradients(model, batch, spec)
    diff = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(fo_grads, so_grads))
    assert diff > 1e-3


@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
def test_second_order_conv_with_norm_matches_finite_differences(norm):
    tf.keras.utils.set_random_seed(2)
    rng = np.random.default_rng(1)
    model = ConvNet(3, img_size=8, channels=1, num_filters=3, norm=norm, dtype=DT,
                    activation=tf.tanh)
    for v in model.shared.values():  # non-zero offsets so their gradients are exercised
        v.assign(rng.normal(size=v.shape) * 0.3)
    batch = _classification_batch(rng)
    spec = InnerLoopSpec(update_lr=0.5, num_updates=2, classification=True, update_batch_size=2)
    assert _finite_difference_check(model, batch, spec, rng) < 1e-6


def test_first_order_matches_its_definition():
    """FOMAML's meta-gradient is the mean over tasks of the query gradient at the fast weights."""
    tf.keras.utils.set_random_seed(3)
    rng = np.random.default_rng(2)
    model = FullyConnectedNet(2, 1, (5,), norm="None", dtype=DT, activation=tf.tanh)
    for v in model.trainable_variables:
        v.assign(rng.normal(size=v.shape) * 0.7)
    batch = _regression_batch(rng)
    spec = InnerLoopSpec(update_lr=0.2, num_updates=2, classification=False, first_order=True)
    grads, _ = maml.meta_gradients(model, batch, spec)

    inputa, labela, inputb, labelb = batch
    expected = {name: np.zeros(v.shape) for name, v in model.adapted.items()}
    num_tasks = inputa.shape[0]
    for t in range(num_tasks):
        fast = {n: tf.constant(v.numpy())[None] for n, v in model.adapted.items()}
        for _ in range(spec.num_updates):
            with tf.GradientTape() as tape:
                tape.watch(list(fast.values()))
                pred = model.forward(inputa[t:t + 1], params=fast)
                loss = tf.reduce_mean(tf.square(pred - labela[t:t + 1]))
            g = tape.gradient(loss, fast)
            fast = {n: fast[n] - spec.update_lr * g[n] for n in fast}
        fast = {n: tf.constant(v.numpy()) for n, v in fast.items()}
        with tf.GradientTape() as tape:
            tape.watch(list(fast.values()))
            loss = tf.reduce_mean(tf.square(model.forward(inputb[t:t + 1], params=fast)
                                            - labelb[t:t + 1]))
        g = tape.gradient(loss, fast)
        for n in expected:
            expected[n] += g[n].numpy()[0] / num_tasks
    for var, grad in zip(model.trainable_variables, grads):
        name = next(n for n, v in model.adapted.items() if v is var)
        np.testing.assert_allclose(grad.numpy(), expected[name], rtol=1e-10, atol=1e-12)


def test_one_inner_step_equals_hand_computed_sgd():
    """Linear regression y = xW + b: the MSE gradient is known in closed form."""
    rng = np.random.default_rng(3)
    model = FullyConnectedNet(3, 1, (), norm="None", dtype=DT)
    w, b = rng.normal(size=(3, 1)), rng.normal(size=(1,))
    model.adapted["w1"].assign(w)
    model.adapted["b1"].assign(b)
    x, y = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 1))
    spec = InnerLoopSpec(update_lr=0.1, num_updates=1, classification=False)
    params = model.tiled_parameters(2)
    fast, losses, _ = maml.inner_step(model, params, {}, tf.constant(x), tf.constant(y), spec)
    for t in range(2):
        residual = x[t] @ w + b - y[t]
        grad_w = 2.0 / 5 * x[t].T @ residual
        grad_b = 2.0 / 5 * residual.sum(axis=0)
        np.testing.assert_allclose(fast["w1"][t].numpy(), w - 0.1 * grad_w, rtol=1e-12)
        np.testing.assert_allclose(fast["b1"][t].numpy(), b - 0.1 * grad_b, rtol=1e-12)
        np.testing.assert_allclose(losses[t].numpy(), np.mean(residual ** 2), rtol=1e-12)


def test_classification_loss_is_cross_entropy_over_k_summed():
    logits = tf.constant([[[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]]], tf.float64)
    labels = tf.constant([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]], tf.float64)
    spec = InnerLoopSpec(update_lr=0.1, num_updates=1, classification=True, update_batch_size=3)
    xent = [np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0)), np.log1p(np.exp(1.0))]
    np.testing.assert_allclose(maml.task_losses(logits, labels, spec).numpy(),
                               [sum(xent) / 3], rtol=1e-12)
    np.testing.assert_allclose(maml.task_accuracies(logits, labels).numpy(), [2 / 3])


def test_batch_norm_offset_is_meta_learned_but_not_adapted():
    tf.keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    model = ConvNet(3, img_size=8, channels=1, num_filters=4, norm="batch_norm")
    batch = tuple(tf.cast(t, tf.float32) for t in _classification_batch(rng))
    spec = InnerLoopSpec(update_lr=0.5, num_updates=2, classification=True, update_batch_size=2)
    offsets_before = {n: v.numpy().copy() for n, v in model.shared.items()}
    trajectory, _, _ = maml.adapt(model, model.tiled_parameters(2), model.shared_parameters(),
                                  batch[0], batch[1], spec, 2)
    for fast in trajectory:
        assert set(fast) == set(model.adapted)  # offsets never enter the fast weights
        assert not set(fast) & set(model.shared)
    for n, v in model.shared.items():
        np.testing.assert_array_equal(v.numpy(), offsets_before[n])
    grads, _ = maml.meta_gradients(model, batch, spec)
    by_var = {id(v): g for v, g in zip(model.trainable_variables, grads)}
    for v in model.shared.values():
        assert float(tf.reduce_max(tf.abs(by_var[id(v)]))) > 0  # but they are meta-learned
    table = model.weights_table()
    assert "norm1_offset  (4,)" in table and "meta-learned only" in table


def test_grouped_conv_meta_gradients_equal_per_task_conv():
    """The fast grouped path (float32 only) agrees with the FD-checked per-task path."""
    from maml_tf.conv_paths import grouped_conv_gradients_available
    available, reason = grouped_conv_gradients_available("float32")
    if not available:  # e.g. the suite run with TF_ENABLE_ONEDNN_OPTS=0 (test_portability)
        pytest.skip(f"grouped-convolution gradients unavailable here: {reason}")
    rng = np.random.default_rng(6)
    batch = tuple(tf.cast(t, tf.float32) for t in _classification_batch(rng, tasks=3))
    spec = InnerLoopSpec(update_lr=0.4, num_updates=2, classification=True, update_batch_size=2)
    results = []
    for impl in ("grouped", "per_task"):
        tf.keras.utils.set_random_seed(6)
        model = ConvNet(3, img_size=8, channels=1, num_filters=4, norm="batch_norm",
                        conv_impl=impl)
        grads, _ = tf.function(lambda b, m=model: maml.meta_gradients(m, b, spec))(batch)
        results.append([g.numpy() for g in grads])
    for a, b in zip(*results):
        # Conv biases before batch norm have (analytically) zero gradient: compare at the
        # scale of the whole gradient, not element-wise relative to round-off.
        scale = max(np.abs(r).max() for r in results[1])
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4 * scale)


def test_task_batched_forward_equals_per_task_forward():
    """Grouped convolutions must not mix tasks: each task alone gives the same outputs."""
    tf.keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    model = ConvNet(5, img_size=16, channels=3, num_filters=4, max_pool=True, flatten_head=True,
                    norm="batch_norm")
    params = {n: tf.constant(rng.normal(size=(3,) + tuple(v.shape)), tf.float32)
              for n, v in model.adapted.items()}
    x = tf.constant(rng.uniform(size=(3, 4, 16 * 16 * 3)), tf.float32)
    together = model.forward(x, params=params).numpy()
    for t in range(3):
        alone = model.forward(x[t:t + 1], params={n: p[t:t + 1] for n, p in params.items()})
        np.testing.assert_allclose(together[t], alone.numpy()[0], rtol=1e-4, atol=1e-4)


def _quadratic_setup(rng, tasks=3, dim=4):
    """Per-task quadratic losses L_t(p) = 0.5 p^T A_t p - c_t^T p, whose gradient is known."""
    a = rng.normal(size=(tasks, dim, dim))
    matrices = a @ np.transpose(a, (0, 2, 1)) / dim + np.eye(dim)
    targets = rng.normal(size=(tasks, dim))
    theta = rng.normal(size=dim)

    def losses(params):
        p = params["p"]
        return (0.5 * tf.einsum("ti,tij,tj->t", p, matrices, p)
                - tf.einsum("ti,ti->t", targets, p))
    return matrices, targets, theta, losses


@pytest.mark.parametrize("first_order", [False, True])
def test_core_gradient_update_is_sgd_and_its_meta_gradient_has_the_right_order(first_order):
    """fast_t = p - a (A_t p - c_t); for M = sum_t 0.5 |fast_t|^2 the meta-gradient is
    sum_t (I - a A_t)^T fast_t (second order) or sum_t fast_t (first order: d fast/dp = I)."""
    rng = np.random.default_rng(7)
    matrices, targets, theta, losses = _quadratic_setup(rng)
    lr = 0.3
    variable = tf.Variable(theta)
    with tf.GradientTape() as tape:
        params = core.tile_params({"p": variable + 0.0}, 3)
        fast, task_losses_before = core.gradient_update(losses, params, lr, first_order)
        meta = 0.5 * tf.reduce_sum(tf.square(fast["p"]))
    expected_fast = theta - lr * (matrices @ theta - targets)
    np.testing.assert_allclose(fast["p"].numpy(), expected_fast, rtol=1e-12)
    np.testing.assert_allclose(task_losses_before.numpy(),
                               0.5 * np.einsum("i,tij,j->t", theta, matrices, theta)
                               - targets @ theta, rtol=1e-12)
    if first_order:
        expected = expected_fast.sum(axis=0)
    else:
        expected = sum((np.eye(4) - lr * matrices[t]).T @ expected_fast[t] for t in range(3))
    np.testing.assert_allclose(tape.gradient(meta, variable).numpy(), expected, rtol=1e-10)


def test_core_adapt_takes_one_step_size_per_update_and_its_own_loss_per_step():
    rng = np.random.default_rng(8)
    matrices, targets, theta, losses = _quadratic_setup(rng)
    params = core.tile_params({"p": tf.constant(theta)}, 3)
    assert params["p"].shape == (3, 4)
    sizes, seen = [0.3, 0.1, 0.05], []

    def loss(p, step):
        seen.append(step)
        return losses(p) * (step + 1)      # a different loss at every step
    trajectory, first = core.adapt(loss, params, 3, sizes)
    assert seen == [0, 1, 2] and len(trajectory) == 3
    expected = np.tile(theta, (3, 1))
    for step, (size, fast) in enumerate(zip(sizes, trajectory)):
        grad = (step + 1) * (np.einsum("tij,tj->ti", matrices, expected) - targets)
        expected = expected - size * grad
        np.testing.assert_allclose(fast["p"].numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="step sizes"):
        core.adapt(loss, params, 2, sizes)


def test_the_supervised_engine_never_imports_rl():
    """rl/ builds on maml_tf (the core), never the reverse: the engine stays RL-free."""
    import ast
    import pathlib
    package = pathlib.Path(core.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n == "rl" or n.startswith("rl.")], path.name


def test_the_meta_optimizer_steps_like_the_originals_tf1_adam():
    """Three meta-updates equal ``tf.compat.v1.train.AdamOptimizer(meta_lr)``'s, epsilon included.

    Gradients from 1e-9 to 1 in size: where they are near epsilon, Keras' default (1e-7) moves a
    weight by a different amount than TF1's 1e-8 (by up to half a step at 1e-8), so this fails
    on the default.
    """
    from maml_tf.learner import MetaLearner

    model = FullyConnectedNet(3, 2, [4], norm="None")
    learner = MetaLearner(model, InnerLoopSpec(0.1, 1, classification=False),
                          meta_lr=0.003)
    rng = np.random.default_rng(7)
    start = [v.numpy() for v in model.trainable_variables]
    steps = [[(rng.normal(size=v.shape) * 10.0 ** rng.integers(-9, 1, size=v.shape)).astype(
        np.float32) for v in start] for _ in range(3)]
    for grads in steps:
        learner.optimizer.apply_gradients(zip(map(tf.constant, grads), model.trainable_variables))

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        variables = [v1.Variable(value) for value in start]
        feeds = [v1.placeholder(tf.float32, value.shape) for value in start]
        update = v1.train.AdamOptimizer(0.003).apply_gradients(zip(feeds, variables))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for grads in steps:
                sess.run(update, dict(zip(feeds, grads)))
            expected = sess.run(variables)
    for ours, theirs, before in zip(model.trainable_variables, expected, start):
        assert np.abs(theirs - before).max() > 1e-3  # the steps moved the weights
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-6)
