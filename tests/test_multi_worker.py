"""--distribute=multi_worker: worker processes on 127.0.0.1 (maml_tf/cluster.py), and the
test mode split across replicas.

Each worker gets its own --logdir: the chief's is the run folder, the other's must stay
empty, which shows that only the chief writes and that no shared filesystem is needed.
"""
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from maml_tf.cluster import localhost_tf_configs, parse_tf_config
from maml_tf.distribute import DistributeError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "cls_5.mbs_4.ubs_5.numstep1.updatelr0.01nonorm"
FLAGS = ["main.py", "--datasource=sinusoid", "--norm=None", "--meta_batch_size=4",
         "--update_batch_size=5", "--update_lr=0.01", "--checkpoint_interval=5"]
ATOL, RTOL = 2e-6, 1e-5   # float32 summation order, as tests/test_distribute.py


def _env(tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return env


def _run(*args, tf_config=None, timeout=300):
    done = subprocess.run([sys.executable, *FLAGS, *args], cwd=ROOT, env=_env(tf_config),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _start_workers(logdirs, *args):
    return [subprocess.Popen([sys.executable, *FLAGS, f"--logdir={logdir}",
                              "--distribute=multi_worker", "--worker_timeout=20", *args],
                             cwd=ROOT, env=_env(config), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for logdir, config in zip(logdirs, localhost_tf_configs(len(logdirs)))]


def _finish(processes, timeout=300):
    outputs = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        outputs.append((process.returncode, out, err))
    for code, _, err in outputs:
        assert code == 0, err[-3000:]
    return outputs


def _weights(directory, iteration):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(os.path.join(directory, f"ckpt-{iteration}"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.startswith(("model/", "optimizer/_iterations"))
            and "OPTIMIZER_SLOT" not in n}


def _files(directory):
    return sorted(os.path.relpath(os.path.join(base, name), directory)
                  for base, _, names in os.walk(directory) for name in names)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One device and two workers, 6 iterations then resumed to 10 (both sides resume: a
    resumed sinusoid run draws other tasks than an uninterrupted one)."""
    root = tmp_path_factory.mktemp("multi_worker")
    single, chief, other = (str(root / name) for name in ("single", "chief", "other"))
    outputs = {}
    for iterations in (6, 10):
        _run(f"--logdir={single}", f"--metatrain_iterations={iterations}")
        outputs[iterations] = _finish(_start_workers(
            [chief, other], f"--metatrain_iterations={iterations}"))
    return {"single": os.path.join(single, NAME), "chief": os.path.join(chief, NAME),
            "other": other, "outputs": outputs}


def test_two_workers_train_as_one_device(runs):
    for iteration in (5, 9):
        one, two = _weights(runs["single"], iteration), _weights(runs["chief"], iteration)
        assert len(one) == 7 and one.keys() == two.keys()
        for name in one:
            np.testing.assert_allclose(two[name], one[name], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{name} after iteration {iteration}")
    # Adam's step count continued across the resume (10 updates in ckpt-9).
    assert int(_weights(runs["chief"], 9)["optimizer/_iterations/.ATTRIBUTES/"
                                           "VARIABLE_VALUE"]) == 10
    (_, chief_out, _), (_, other_out, _) = runs["outputs"][6]
    assert "--distribute=multi_worker: 2 replicas, 2 tasks each" in chief_out
    assert "Done initializing, starting training." in chief_out
    assert "starting training" not in other_out and "the chief writes" in other_out


def test_only_the_chief_writes_and_resume_continues(runs):
    files = _files(runs["chief"])
    assert {"ckpt-5.index", "ckpt-9.index", "config.json"} <= set(files)
    assert [f for f in files if f.startswith("events.out.tfevents")]
    assert _files(runs["other"]) == []   # the other worker wrote nothing at all
    (_, chief_out, _), (_, other_out, _) = runs["outputs"][10]
    assert f"Restoring model weights from {runs['chief']}/ckpt-5" in chief_out
    assert "Restoring" not in other_out


def test_test_mode_split_across_replicas_writes_the_same_csv(runs, tmp_path):
    """Test mode on one device, on 2 mirrored CPU devices and on 2 workers: the same tasks in
    the same order (60 tasks in chunks of 25: the last chunk is padded, and 25 tasks do not
    split into 2 equal shares, so both paddings are exercised)."""
    flags = ["--train=False", "--num_test_tasks=60", "--test_batch_size=25",
             f"--logdir={os.path.dirname(runs['single'])}"]
    base = os.path.join(runs["single"], "test_ubs5_stepsize0.01")
    results = {}
    for name, extra in (("none", []), ("mirrored", ["--distribute=mirrored",
                                                    "--num_cpu_devices=2"])):
        _run(*flags, *extra)
        results[name] = _read(base)
    workers = _start_workers([os.path.dirname(runs["single"]), str(tmp_path)],
                             *flags[:-1])
    _finish(workers)
    results["multi_worker"] = _read(base)
    assert _files(str(tmp_path)) == []
    reference = results.pop("none")
    assert reference["values"].shape == (60, 11)
    for name, result in results.items():
        np.testing.assert_allclose(result["values"], reference["values"], rtol=RTOL,
                                   atol=ATOL, err_msg=name)
        np.testing.assert_allclose(result["csv"], reference["csv"], rtol=RTOL, atol=ATOL,
                                   err_msg=name)


def _read(base):
    import pickle
    with open(base + ".pkl", "rb") as handle:
        values = pickle.load(handle)["mses"]
    with open(base + ".csv", newline="") as handle:
        rows = [[float(v) for v in row] for row in list(csv.reader(handle))[1:]]
    return {"values": np.asarray(values), "csv": np.asarray(rows)}


def test_killing_a_worker_ends_the_chief_with_a_message(tmp_path):
    chief, other = _start_workers([str(tmp_path / "chief"), str(tmp_path / "other")],
                                  "--metatrain_iterations=1000000", "--worker_timeout=5",
                                  "--checkpoint_interval=200")
    try:
        deadline = time.time() + 240
        while not glob.glob(str(tmp_path / "chief" / NAME / "ckpt-*.index")):
            assert chief.poll() is None and other.poll() is None, chief.stderr.read()[-2000:]
            assert time.time() < deadline, "the workers never reached a checkpoint"
            time.sleep(0.5)
        other.send_signal(signal.SIGKILL)
        killed = time.time()
        _, err = chief.communicate(timeout=60)
        assert time.time() - killed < 40   # heartbeat timeout (5 s) plus slack
    finally:
        for process in (chief, other):
            if process.poll() is None:
                process.kill()
    assert chief.returncode == 2, err[-2000:]
    assert "lost contact with a task of the cluster" in err
    assert "Traceback" not in err


def test_unreachable_worker_fails_within_the_timeout(tmp_path):
    started = time.time()
    done = subprocess.run([sys.executable, *FLAGS, f"--logdir={tmp_path}",
                           "--distribute=multi_worker", "--worker_timeout=3"], cwd=ROOT,
                          env=_env(localhost_tf_configs(2)[0]), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "could not reach every task of TF_CONFIG within --worker_timeout=3 s" in done.stderr
    assert "worker 1 at 127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.time() - started < 60
    assert _files(str(tmp_path)) == []   # failed before any work


@pytest.mark.parametrize("env, args, message", [
    (None, [], "--distribute=multi_worker needs the TF_CONFIG environment variable"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]},
                 "task": {"type": "worker", "index": 0}}), [],
     "--meta_batch_size=4 is not divisible by the 3 workers of TF_CONFIG"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                 "task": {"type": "worker", "index": 0}}), ["--num_cpu_devices=2"],
     "--num_cpu_devices=2 needs --distribute=mirrored"),
])
def test_bad_multi_worker_flags_fail_before_any_work(tmp_path, env, args, message):
    done = subprocess.run([sys.executable, *FLAGS, f"--logdir={tmp_path}",
                           "--distribute=multi_worker", *args], cwd=ROOT, env=_env(env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert _files(str(tmp_path)) == []


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('["a"]', "must be a JSON object with a \"cluster\" object"),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "has no chief"),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}',
     "names the job(s) ['ps']"),
    ('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
     "names h:1 twice (worker 0 and worker 1)"),
    ('{"cluster": {"chief": ["h:1"], "worker": ["h:1"]}, "task": {"type": "chief", '
     '"index": 0}}', "names h:1 twice (chief 0 and worker 0)"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}',
     "task worker 1 is not in its cluster"),
    ('{"cluster": {"worker": ["h"]}, "task": {"type": "worker", "index": 0}}',
     "must be a list of \"host:port\" strings"),
    ('{"cluster": {"worker": ["h:1"]}}', "TF_CONFIG's task must be"),
])
def test_tf_config_errors(text, message):
    with pytest.raises(DistributeError) as raised:
        parse_tf_config(text)
    assert message in str(raised.value)


def test_tf_config_chief():
    spec = parse_tf_config('{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, '
                           '"task": {"type": "worker", "index": 0}}')
    assert spec.num_workers == 3 and not spec.is_chief
    assert [t[:2] for t in spec.tasks] == [("chief", 0), ("worker", 0), ("worker", 1)]
    assert parse_tf_config('{"cluster": {"worker": ["b:1", "c:1"]}, "task": '
                           '{"type": "worker", "index": 0}}').is_chief
