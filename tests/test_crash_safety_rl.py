"""RL runs survive kills, NaN, misuse and signals (issue 11): tiny point-robot runs."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from maml_tf import run_folder
from maml_tf.stopping import NonFiniteError
from rl.config import PolicyConfig, TrainConfig
from rl.maml_trpo import TRPOConfig
from rl.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--env_name=point", "--meta_batch_size=4", "--fast_batch_size=4",
        "--max_path_length=20", "--hidden_sizes=8"]


def tiny_cfg(logdir, n_itr, **overrides):
    values = dict(env_name="point", meta_batch_size=4, fast_batch_size=4, max_path_length=20,
                  n_itr=n_itr, seed=3, logdir=str(logdir),
                  policy=PolicyConfig(hidden_sizes=(8,)), trpo=TRPOConfig(fast_lr=0.5))
    values.update(overrides)
    return TrainConfig(**values)


def train(cfg):
    trainer = Trainer(cfg)
    try:
        return trainer.train()
    finally:
        trainer.close()


def progress_iterations(logdir):
    with open(os.path.join(logdir, "progress.csv")) as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]


def event_steps(logdir, tag="return_post_update"):
    from tensorflow.core.util import event_pb2
    steps = []
    for name in sorted(os.listdir(logdir)):
        if name.startswith("events.out.tfevents"):
            for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
                event = event_pb2.Event.FromString(record.numpy())
                steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_fresh_start_refused_overwrite_and_complete(tmp_path):
    train(tiny_cfg(tmp_path, 2))
    with pytest.raises(run_folder.RunFolderError, match="already holds a run .*ckpt-2"):
        Trainer(tiny_cfg(tmp_path, 2, resume=False))
    assert train(tiny_cfg(tmp_path, 2)) == []             # complete: nothing run
    with pytest.raises(run_folder.RunFolderError, match="--hidden_sizes was \\[8\\], now"):
        Trainer(tiny_cfg(tmp_path, 3, policy=PolicyConfig(hidden_sizes=(4,))))
    assert len(train(tiny_cfg(tmp_path, 1, resume=False, overwrite=True))) == 1
    assert progress_iterations(tmp_path) == [0]
    assert run_folder.checkpoint_iterations(str(tmp_path / "checkpoints")) == [0, 1]


def test_second_trainer_on_one_logdir_is_refused(tmp_path):
    first = Trainer(tiny_cfg(tmp_path, 1))
    try:
        with pytest.raises(run_folder.RunFolderError, match="in use by another training"):
            Trainer(tiny_cfg(tmp_path, 1))
    finally:
        first.close()
    train(tiny_cfg(tmp_path, 1))    # released by close()


def test_resume_after_a_kill_has_no_duplicate_rows_or_points(tmp_path):
    """A kill between logging iteration k and saving ckpt-(k+1) left rows and points that
    the resumed run writes again: they are dropped at the restored iteration."""
    train(tiny_cfg(tmp_path, 4))
    for name in ("ckpt-4", "ckpt-3"):   # as if killed before these were written
        for suffix in (".index", ".data-00000-of-00001"):
            os.remove(tmp_path / "checkpoints" / (name + suffix))
    assert progress_iterations(tmp_path) == [0, 1, 2, 3]
    assert len(train(tiny_cfg(tmp_path, 5))) == 3               # iterations 2, 3, 4
    assert progress_iterations(tmp_path) == [0, 1, 2, 3, 4]
    assert event_steps(str(tmp_path)) == [0, 1, 2, 3, 4]


def test_non_finite_step_is_undone_and_stops_the_run(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, 5))
    step = trainer.learner.meta_step
    calls = []

    def poisoned(*args):
        result = step(*args)
        calls.append(1)
        if len(calls) == 2:   # iteration 1: the step leaves NaN parameters
            trainer.policy.set_flat(trainer.policy.get_flat().numpy() * np.nan)
        return result

    trainer.learner.meta_step = poisoned
    try:
        with pytest.raises(NonFiniteError, match="iteration 1: not finite.*last saved: ckpt-1"):
            trainer.train()
        assert np.all(np.isfinite(trainer.policy.get_flat().numpy()))
    finally:
        trainer.close()
    assert run_folder.checkpoint_iterations(str(tmp_path / "checkpoints")) == [0, 1]


def _rl(*flags, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "rl.main", *TINY, *flags], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_background_run_stops_on_sigint_with_its_checkpoint():
    """Started as a shell starts a background job (SIGINT ignored), SIGINT still stops it
    cleanly: one line, status 130, the checkpoint of every finished iteration."""
    import pathlib
    import shutil
    import tempfile
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="crash_safety_rl_"))   # not pruned by a
    try:                                                     # concurrent pytest session
        _background_sigint(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _background_sigint(tmp_path):
    process = _rl(f"--logdir={tmp_path}", "--n_itr=100000",
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "progress.csv").exists():
        time.sleep(0.5)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    final = [line for line in err.splitlines() if line.startswith("Stopped by SIGINT")]
    assert len(final) == 1, err[-2000:]
    rows = progress_iterations(tmp_path)
    assert rows == list(range(len(rows)))
    assert run_folder.checkpoint_iterations(str(tmp_path / "checkpoints"))[-1] == len(rows)
    assert f"ckpt-{len(rows)}" in final[0]


def test_sigterm_to_the_group_stops_a_run_with_worker_processes_cleanly(tmp_path):
    """As the campaign drivers stop a run (SIGTERM to its process group; Ctrl-C likewise
    reaches a terminal's whole group): the sampler's workers are not in the group, so the
    trainer finishes its iteration on live workers, saves and stops with one line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rl.main", "--env_name=cheetah_vel", "--meta_batch_size=2",
         "--fast_batch_size=2", "--max_path_length=10", "--hidden_sizes=8",
         "--num_workers=2", f"--logdir={tmp_path}", "--n_itr=100000"],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "progress.csv").exists():
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "WorkerError" not in err, err[-2000:]
    final = [line for line in err.splitlines() if line.startswith("Stopped by SIGTERM")]
    assert len(final) == 1, err[-2000:]
    rows = progress_iterations(tmp_path)
    assert rows and run_folder.checkpoint_iterations(str(tmp_path / "checkpoints"))[-1] == len(rows)


def test_bad_test_checkpoint_and_unwritable_logdir_are_clear_errors(tmp_path):
    train(tiny_cfg(tmp_path, 1))
    process = _rl(f"--logdir={tmp_path}", "--mode=test", "--test_checkpoint=7",
                  "--test_num_episodes=2")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "no checkpoint for iteration 7" in err, err[-2000:]
    assert "Traceback" not in err
    process = _rl("--logdir=/proc/forbidden/run")
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "--logdir must be a folder" in err
    assert "Traceback" not in err


def test_exported_policy_checks_its_inputs(tmp_path):
    from rl.export import export_policy
    from rl.maml_trpo import MAMLTRPO
    from rl.policies import GaussianMLPPolicy
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(4,), seed=0)
    loaded = tf.saved_model.load(export_policy(MAMLTRPO(policy, TRPOConfig(fast_lr=0.1)),
                                               str(tmp_path / "policy")))
    adapt = loaded.signatures["adapt_and_act"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="observations and actions must have the same number of rows"):
        adapt(observations=tf.ones([5, 2]), actions=tf.ones([4, 2]),
              advantages=tf.ones([5]), query_observations=tf.ones([1, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="observations must hold at least"):
        adapt(observations=tf.ones([0, 2]), actions=tf.ones([0, 2]),
              advantages=tf.ones([0]), query_observations=tf.ones([1, 2]))
    assert loaded.signatures["act"](observations=tf.ones([3, 2]))["mean"].shape == (3, 2)
