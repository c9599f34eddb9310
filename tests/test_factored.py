"""The factored one-step inner loop (maml_tf.factored) against the generic path: the same
meta-gradients and metrics, in float64, for every norm, loss and order."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from maml_tf import factored, maml
from maml_tf.config import ExperimentConfig
from maml_tf.experiment import build_model
from maml_tf.maml import InnerLoopSpec
from maml_tf.models import ConvNet, FullyConnectedNet

DT = "float64"


def _twins(sizes, norm, seed=0):
    """Two nets with the same weights (larger than the original's init, so that second-order
    terms matter): one factored, one generic."""
    rng = np.random.default_rng(seed)
    nets = [FullyConnectedNet(sizes[0], sizes[-1], sizes[1:-1], norm=norm, dtype=DT,
                              factored_inner_step=flag) for flag in (True, False)]
    for variables in zip(*(net.trainable_variables for net in nets)):
        value = rng.normal(size=variables[0].shape) * 0.5
        for v in variables:
            v.assign(value)
    return nets


def _batch(rng, tasks, k, q, dim_in, dim_out, classification):
    def labels(n):
        if classification:
            return np.eye(dim_out)[rng.integers(0, dim_out, size=(tasks, n))]
        return rng.normal(size=(tasks, n, dim_out))
    return tuple(tf.constant(v, DT) for v in (rng.normal(size=(tasks, k, dim_in)), labels(k),
                                              rng.normal(size=(tasks, q, dim_in)), labels(q)))


CASES = {   # name: (layer sizes, norm, classification, K, Q)
    "sinusoid": ((1, 40, 40, 1), "None", False, 10, 10),
    "no-conv batch norm": ((12, 16, 8, 3), "batch_norm", True, 3, 3),
    "layer norm": ((6, 9, 7, 2), "layer_norm", False, 4, 5),
    "K above every width": ((3, 4, 2), "None", False, 6, 2),
}


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_factored_step_gives_the_generic_meta_gradient(case, first_order):
    sizes, norm, classification, k, q = CASES[case]
    fast, plain = _twins(sizes, norm)
    spec = InnerLoopSpec(0.3, 1, classification=classification, update_batch_size=k,
                         first_order=first_order)
    batch = _batch(np.random.default_rng(1), 5, k, q, sizes[0], sizes[-1], classification)
    assert factored.applies(fast, 1) and not factored.applies(plain, 1)
    grads, metrics = maml.meta_gradients(fast, batch, spec)
    reference, reference_metrics = maml.meta_gradients(plain, batch, spec)
    for name, g, r in zip([v.name for v in fast.trainable_variables], grads, reference):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    assert sorted(metrics) == sorted(reference_metrics)
    for name in metrics:
        np.testing.assert_allclose(metrics[name], reference_metrics[name], rtol=1e-10)


def test_factored_step_is_the_path_taken(monkeypatch):
    """The equality above means something only if maml.meta_gradients runs the factored
    step for a factored net (and only then)."""
    calls = []
    one_step = factored.one_step
    monkeypatch.setattr(factored, "one_step", lambda *a, **kw: calls.append(1) or one_step(*a, **kw))
    fast, plain = _twins((1, 40, 40, 1), "None")
    batch = _batch(np.random.default_rng(0), 3, 10, 10, 1, 1, False)
    maml.meta_gradients(plain, batch, InnerLoopSpec(0.01, 1, classification=False))
    assert calls == []
    maml.meta_gradients(fast, batch, InnerLoopSpec(0.01, 1, classification=False))
    assert calls == [1]


def test_factored_step_applies_to_one_step_of_fully_connected_nets_only():
    net = FullyConnectedNet(1, 1, (40, 40))
    assert factored.applies(net, 1)
    assert not factored.applies(net, 2)        # factors would pile up: the generic path
    assert not factored.applies(ConvNet(5, 28, 1, 8), 1)


def test_only_layers_wider_than_the_support_set_stay_factored():
    """The sinusoid at K = 10: the 40 x 40 layer as factors, 1 x 40 and 40 x 1 formed."""
    net = FullyConnectedNet(1, 1, (40, 40))
    weights = net.meta_parameters()
    assert [factored._factored(weights[f"w{i}"], 10) for i in (1, 2, 3)] == [False, True, False]
    assert not factored._factored(weights["w2"], 40)
    assert not factored._factored(weights["w2"], None)


def test_the_flag_reaches_the_models_main_py_builds():
    """--factored_inner_step (default on) -> ExperimentConfig -> the fully connected nets."""
    script = ("import json; from absl import flags as absl_flags; import flags.supervised as S; "
              "F = absl_flags.FLAGS; F(['x', '--factored_inner_step=false']); "
              "print(json.dumps(S.config_from_flags().factored_inner_step))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) is False

    shape = SimpleNamespace(dim_input=1, dim_output=1)
    for flag in (True, False):
        cfg = ExperimentConfig(datasource="sinusoid", norm="None", factored_inner_step=flag)
        assert build_model(cfg, shape).factored_inner_step is flag
        cfg = ExperimentConfig(datasource="omniglot", conv=False, factored_inner_step=flag)
        no_conv = build_model(cfg, SimpleNamespace(dim_input=784, dim_output=5))
        assert no_conv.factored_inner_step is flag
