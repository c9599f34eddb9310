"""--distribute=mirrored computes the single-device TRPO meta-step (rl/distribute.py).

Logical CPU devices can only be configured before TensorFlow initialises its devices, and
the test process has long done so: the distributed computations run in one subprocess,
which builds a single-device and a mirrored learner side by side on the same batches.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tasks whose paths end at different steps (masks), so that a mean of the two shares' mean
# KLs would differ from the mean over all real steps: the reduction must sum numerators and
# denominators. Quantities are evaluated at theta and at a point off theta (at theta the KL
# and its gradient are zero). float32 compares the components (the same sums in another
# order); a whole TRPO step is compared in float64: conjugate gradient amplifies the
# float32 rounding of the products by the KL Hessian's condition number (on these small
# random batches a 0.2 step differed by up to 6e-4 between any two summation orders).
SCRIPT = r"""
import json, sys
import maml_tf
import numpy as np
from maml_tf import distribute
strategy = distribute.build_strategy("mirrored", 2)
assert strategy.num_replicas_in_sync == 2
import tensorflow as tf
from rl.adaptation import to_sample_batch
from rl.distribute import MirroredTRPO
from rl.episodes import Episodes
from rl.maml_trpo import MAMLTRPO, TRPOConfig
from rl.policies import GaussianMLPPolicy

def episodes(rng, tasks=4, paths=3, horizon=6):
    shape = (tasks, paths, horizon)
    lengths = rng.integers(1, horizon + 1, size=(tasks, paths, 1))
    mask = (np.arange(horizon) < lengths).astype(float)
    lengths[0] = 1                      # task 0: far fewer real steps than the others
    mask[0] = (np.arange(horizon) < 1)
    return Episodes(rng.normal(size=shape + (3,)), rng.normal(size=shape + (2,)),
                    rng.normal(size=shape) * mask, mask, rng.normal(size=shape) * mask)

def as_list(values):
    values = values if isinstance(values, tuple) else (values,)
    return [np.asarray(v).tolist() for v in values]

out = {}
for dtype in ("float32", "float64"):
    rng = np.random.default_rng(3)
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(6, 5), seed=2, dtype=dtype)
    for name, variable in policy.named_variables():
        if name.endswith("bias"):
            variable.assign(rng.uniform(-0.3, 0.3, variable.shape).astype(dtype))
    train, valid_episodes = episodes(rng), episodes(rng)
    config = TRPOConfig(fast_lr=0.3, fd_base_eps=1e-4 if dtype == "float64" else 1.0)
    learners = {"one": MAMLTRPO(policy, config),
                "mirrored": MirroredTRPO(policy, config, strategy)}
    theta = policy.get_flat().numpy()
    off = theta + 0.05 * rng.normal(size=theta.shape).astype(dtype)
    vector = rng.normal(size=theta.shape)
    batches = (to_sample_batch(train, policy.log_std.dtype),)
    result = {}
    for key, learner in learners.items():
        valid = learner.make_valid_batch(tf.constant(theta), batches, valid_episodes)
        data = learner.place(batches, valid)
        row = {"old_mean": as_list(valid.old_mean)}
        for where, params in (("theta", theta), ("off", off)):
            params = tf.constant(params)
            row[f"loss_kl_{where}"] = as_list(learner._loss_kl_fn(params, *data))
            row[f"loss_grad_{where}"] = as_list(learner._loss_grad_fn(params, *data))
            row[f"kl_grad_{where}"] = as_list(learner._kl_grad_fn(params, *data))
        for hvp in ("fd", "exact"):
            learner.config.hvp = hvp
            row[f"hvp_{hvp}"] = learner.hvp_function(off, batches, valid)(vector).tolist()
            policy.set_flat(theta)
            info = learner.meta_step([train], valid_episodes)
            row[f"step_{hvp}"] = policy.get_flat().numpy().tolist()
            row[f"info_{hvp}"] = {k: float(info[k]) for k in ("loss_after", "mean_kl",
                                                               "backtracks", "accepted")}
            policy.set_flat(theta)
        result[key] = row
    result["theta"] = theta.tolist()
    out[dtype] = result
try:
    learners["mirrored"].place(batches[:0], valid._replace(obs=valid.obs[:3]))
    out["bad_split"] = "no error"
except distribute.DistributeError as error:
    out["bad_split"] = str(error)
print("RESULTS " + json.dumps(out))
"""

def _run(script, stdin="", timeout=240):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.fixture(scope="module")
def results():
    return _run(SCRIPT)


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-10)])
def test_mirrored_terms_equal_single_device(results, dtype, rtol):
    one, mirrored = results[dtype]["one"], results[dtype]["mirrored"]
    for key in one:
        if key.startswith(("step_", "info_")):
            continue
        for a, b in zip(one[key], mirrored[key]):
            a, b = np.asarray(a, float), np.asarray(b, float)
            scale = max(float(np.abs(a).max()), 1e-30)
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * scale, err_msg=key)
    # the point off theta has a non-trivial KL and KL gradient; the products are non-zero
    assert one["loss_kl_off"][1] > 1e-4
    assert np.abs(one["kl_grad_off"][0]).max() > 1e-4
    assert np.abs(one["hvp_exact"]).max() > 1e-3


# The finite-difference product divides float64 rounding by its step (eps about 1e-5 here)
# before conjugate gradient amplifies it: a looser bound than the exact product's.
@pytest.mark.parametrize("hvp,rtol", [("fd", 1e-5), ("exact", 1e-8)])
def test_mirrored_trpo_step_equals_single_device(results, hvp, rtol):
    one, mirrored = results["float64"]["one"], results["float64"]["mirrored"]
    theta = np.asarray(results["float64"]["theta"])
    step_one = np.asarray(one[f"step_{hvp}"])
    step_mirrored = np.asarray(mirrored[f"step_{hvp}"])
    assert one[f"info_{hvp}"]["accepted"] and np.abs(step_one - theta).max() > 1e-3
    assert one[f"info_{hvp}"] == pytest.approx(mirrored[f"info_{hvp}"], rel=rtol)
    np.testing.assert_allclose(step_mirrored, step_one, rtol=rtol, atol=rtol * 1e-2)


def test_uneven_split_is_refused(results):
    """MirroredTRPO's own check (the flag-level refusals are cases of tests/test_rl_flags.py)."""
    assert "--meta_batch_size" in results["bad_split"]
    assert "--meta_batch_size=3 is not divisible by the 2 replicas" in results["bad_split"]
