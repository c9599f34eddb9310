"""--distribute=mirrored computes the single-device update (maml_tf/distribute.py).

Logical CPU devices can only be configured before TensorFlow initialises its devices, and
the test process has long done so: every distributed run happens in a subprocess.
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Float32 sums in a different order (two half-batch means averaged instead of one mean):
# differences of a few ulps per step, far below one Adam step (meta_lr 1e-3).
ATOL, RTOL = 2e-6, 1e-5

# Single-device and mirrored learners side by side from the same seed, trained on the same
# batches; prints the largest weight difference, the largest difference between the
# replicas' copies of a mirrored weight, and whether each mirrored step reported finite.
# Weights are compared without normalisation: with batch norm the gradient of a bias that
# precedes the normalisation is zero up to rounding, and Adam (g / (sqrt(v) + 1e-7)) turns
# that rounding noise into steps of about meta_lr, different in any two summation orders
# (one device against itself with another batch split does the same). With batch norm the
# meta-gradients themselves are compared, which is what the all-reduce must preserve.
# XLA per replica is exercised by the main.py test (the sinusoid's default).
EQUIVALENCE_SCRIPT = r"""
import json, sys
import maml_tf
import keras, numpy as np
from maml_tf import distribute
from maml_tf.learner import MetaLearner
from maml_tf.maml import InnerLoopSpec
from maml_tf.models import ConvNet, FullyConnectedNet

strategy = distribute.build_strategy("mirrored", 2)
assert strategy.num_replicas_in_sync == 2
CASES = {
    "sinusoid": dict(make=lambda norm: FullyConnectedNet(1, 1, (40, 40), norm=norm),
                     spec=dict(update_lr=0.01, num_updates=2, classification=False,
                               update_batch_size=10),
                     shapes=((10, 1), (10, 1)), jit=False),
    "conv": dict(make=lambda norm: ConvNet(3, img_size=10, channels=1, num_filters=4,
                                           norm=norm),
                 spec=dict(update_lr=0.4, num_updates=1, classification=True,
                           update_batch_size=2),
                 shapes=((6, 100), (6, 3)), jit=False),
}

def batches(case, count, seed):
    rng = np.random.default_rng(seed)
    (n, din), (_, dout) = case["shapes"]
    out = []
    for _ in range(count):
        if case["spec"]["classification"]:
            labels = [np.eye(dout, dtype=np.float32)[rng.integers(0, dout, size=(4, n))]
                      for _ in range(2)]
        else:
            labels = [rng.uniform(-3, 3, size=(4, n, dout)).astype(np.float32)
                      for _ in range(2)]
        inputs = [rng.uniform(-1, 1, size=(4, n, din)).astype(np.float32) for _ in range(2)]
        out.append((inputs[0], labels[0], inputs[1], labels[1]))
    return out

def learner(case, first_order, mirrored, clip, norm="None"):
    keras.utils.set_random_seed(3)
    spec = InnerLoopSpec(first_order=first_order, **case["spec"])
    if not mirrored:
        return MetaLearner(case["make"](norm), spec, clip_value=clip, jit_compile=case["jit"])
    with strategy.scope():
        return distribute.MirroredMetaLearner(case["make"](norm), spec, strategy,
                                              clip_value=clip, jit_compile=case["jit"])

result = {}
name = sys.argv[1]
case = CASES[name]
for first_order in (False, True):
    clip = 0.05 if first_order else None  # clipping binds: it must follow the reduction
    one, two = learner(case, first_order, False, clip), learner(case, first_order, True, clip)
    initial = [v.numpy().copy() for v in one.model.trainable_variables]
    finite = []
    for batch in batches(case, 4, seed=1):
        one.meta_train_step(batch)
        finite.append(bool(two.meta_train_step(batch)["finite"]))
    if name == "sinusoid":  # the in-graph loop of many steps per call
        stacked = tuple(np.stack(part) for part in zip(*batches(case, 3, seed=2)))
        one.meta_train_steps(stacked)
        finite.append(two.meta_train_steps(stacked)[0] == 3)
        one.pretrain_step(batches(case, 1, seed=4)[0])
        finite.append(bool(two.pretrain_step(batches(case, 1, seed=4)[0])["finite"]))
    a = [v.numpy() for v in one.model.trainable_variables]
    b = [v.numpy() for v in two.model.trainable_variables]
    copies = [[c.numpy() for c in v.value.values] for v in two.model.trainable_variables]
    result["second" if not first_order else "first"] = {
        "max_difference": max(float(np.abs(x - y).max()) for x, y in zip(a, b)),
        "relative_difference": max(float(np.abs(x - y).max() / (np.abs(x).max() + 1e-30))
                                   for x, y in zip(a, b)),
        "max_change": max(float(np.abs(x - y).max()) for x, y in zip(a, initial)),
        "copies_difference": max(float(np.abs(c[0] - c[1]).max()) for c in copies),
        "num_copies": min(len(c) for c in copies),
        "finite": finite,
        "iterations": int(two.optimizer.iterations.numpy()),
    }
one, two = (learner(case, False, mirrored, None, "batch_norm") for mirrored in (False, True))
batch = batches(case, 1, seed=5)[0]
(g1, m1), (g2, m2) = one._meta_grads(*batch), two._meta_grads(*batch)
result["batch_norm_gradients"] = {
    "max_difference": max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(g1, g2)),
    "max_gradient": max(float(np.abs(a.numpy()).max()) for a in g1),
    "loss_difference": abs(float(m1["post_loss"]) - float(m2["post_loss"]))}
print(json.dumps(result))
"""


def _python(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return done


@pytest.fixture(scope="module", params=["sinusoid", "conv"])
def equivalence(request):
    done = _python("-c", EQUIVALENCE_SCRIPT, request.param)
    assert done.returncode == 0, done.stderr[-3000:]
    return request.param, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", ["second", "first"])
def test_mirrored_on_two_devices_equals_one_device(equivalence, order):
    name, result = equivalence
    values = result[order]
    steps = 4 + (4 if name == "sinusoid" else 0)  # 4 single + 3 in one call + 1 pretrain
    assert values["iterations"] == steps
    assert all(values["finite"])
    # The runs trained (weights moved by many tolerances) and stayed together.
    assert values["max_change"] > 100 * ATOL
    assert values["max_difference"] <= ATOL, values
    assert values["relative_difference"] <= RTOL, values
    # Every replica's copy of every weight holds the same value.
    assert values["num_copies"] == 2
    assert values["copies_difference"] == 0.0


def test_mirrored_batch_norm_meta_gradients_equal_one_device(equivalence):
    """Per-task batch norm needs no cross-replica statistics: same gradients and loss."""
    _, result = equivalence
    values = result["batch_norm_gradients"]
    assert values["max_gradient"] > 1e-3
    assert values["max_difference"] <= 1e-6 * max(1.0, values["max_gradient"]), values
    assert values["loss_difference"] <= 2e-6, values


def _main(*args, timeout=600):
    return _python("main.py", "--datasource=sinusoid", "--norm=None", "--meta_batch_size=4",
                   "--update_batch_size=5", "--update_lr=0.01", "--log=False",
                   *args, timeout=timeout)


def _weights(directory, iteration):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(os.path.join(directory, f"ckpt-{iteration}"))
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if n.startswith("model/") and "OPTIMIZER_SLOT" not in n)
    assert names
    return {n: reader.get_tensor(n) for n in names}


def _experiment_dir(logdir):
    found = glob.glob(os.path.join(logdir, "cls_*"))
    assert len(found) == 1, found
    return found[0]


def test_main_mirrored_run_and_resume_on_another_replica_count(tmp_path):
    """main.py (XLA per replica, many steps per call): 2 replicas for 6 iterations equal one
    device; resuming that run on one device for 4 more equals the single-device run resumed
    the same way (the checkpoint does not depend on the replica count). Both sides resume,
    because a resumed sinusoid run draws other tasks than an uninterrupted one."""
    single, mirrored = str(tmp_path / "single"), str(tmp_path / "mirrored")
    done = _main(f"--logdir={single}", "--metatrain_iterations=6", "--checkpoint_interval=5")
    assert done.returncode == 0, done.stderr[-3000:]
    done = _main(f"--logdir={single}", "--metatrain_iterations=10", "--checkpoint_interval=5")
    assert done.returncode == 0, done.stderr[-3000:]
    done = _main(f"--logdir={mirrored}", "--metatrain_iterations=6", "--checkpoint_interval=5",
                 "--distribute=mirrored", "--num_cpu_devices=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 replicas, 2 tasks each" in done.stdout
    first, second = _weights(_experiment_dir(single), 5), _weights(_experiment_dir(mirrored), 5)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_allclose(second[name], first[name], rtol=RTOL, atol=ATOL)
    done = _main(f"--logdir={mirrored}", "--metatrain_iterations=10", "--checkpoint_interval=5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restoring model weights" in done.stdout
    first, second = _weights(_experiment_dir(single), 9), _weights(_experiment_dir(mirrored), 9)
    for name in first:
        np.testing.assert_allclose(second[name], first[name], rtol=RTOL, atol=ATOL)


# The --distribute flag refusals are cases of tests/test_flags.py's one-process table.
