"""Supervised runs survive kills, damaged files, NaN, misuse and signals (issue 11).

In-process tests use tiny sinusoid runs; the kill -9, signal and two-trainer tests start
main.py as a user would. Checkpoint intervals are small so that every case runs in seconds.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from data_generators.factory import build_task_sources
from maml_tf import experiment, run_folder, trainer
from maml_tf.checkpoint import CheckpointError, CheckpointWriteError, IterationCheckpointer
from maml_tf.config import ExperimentConfig
from maml_tf.stopping import NonFiniteError
from tests.checkpoint_damage import damage_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINE = ["--datasource=sinusoid", "--norm=None", "--update_batch_size=10", "--update_lr=0.01",
        "--xla=off"]


def sine_cfg(logdir, **overrides):
    values = dict(datasource="sinusoid", norm="None", update_batch_size=10, update_lr=0.01,
                  metatrain_iterations=60, logdir=str(logdir), xla="off", seed=3,
                  checkpoint_interval=20, log=False)
    values.update(overrides)
    return ExperimentConfig(**values)


class Log(list):
    def __call__(self, line):
        self.append(line)

    def text(self):
        return "\n".join(self)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 60-iteration run with checkpoints 20, 40, 59, copied afresh by each test."""
    root = tmp_path_factory.mktemp("finished")
    experiment.run(sine_cfg(root), build_task_sources, log=Log())
    return root


def copy_run(finished_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target, sine_cfg(target).experiment_dir


def read_var(prefix, name):
    return tf.train.load_checkpoint(prefix).get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE")


def test_lock_refuses_a_second_trainer_and_takes_over_a_stale_one(tmp_path):
    with run_folder.RunLock(str(tmp_path)):
        with pytest.raises(run_folder.RunFolderError, match="in use by another training "
                                                            "process.*pid"):
            run_folder.RunLock(str(tmp_path)).acquire()
    # released cleanly: the file is empty, the next holder says nothing
    log = Log()
    with run_folder.RunLock(str(tmp_path), log):
        pass
    assert log == []
    # a holder killed without releasing leaves its line; the lock itself is free
    (tmp_path / ".lock").write_text("pid 123 on host since then\n")
    with run_folder.RunLock(str(tmp_path), log):
        pass
    assert "Taking over the lock" in log.text() and "pid 123" in log.text()


def test_fresh_start_over_a_run_needs_overwrite_and_complete_run_says_so(finished_run,
                                                                        tmp_path):
    logdir, directory = copy_run(finished_run, tmp_path)
    before = sorted(os.listdir(directory))
    read = []   # the refusal comes before any data is read (the data layer is not asked)
    with pytest.raises(run_folder.RunFolderError, match="already holds a run.*ckpt-59.*"
                                                        "--overwrite"):
        experiment.run(sine_cfg(logdir, resume=False), read.append, log=Log())
    assert sorted(os.listdir(directory)) == before and read == []   # nothing touched
    log = Log()
    result = experiment.run(sine_cfg(logdir), build_task_sources, log=log)
    assert result["last_itr"] == 59 and "Run already complete: ckpt-59" in log.text()
    log = Log()
    result = experiment.run(sine_cfg(logdir, resume=False, overwrite=True,
                                     metatrain_iterations=30), build_task_sources, log=log)
    assert result["resume_itr"] == 0 and result["last_itr"] == 29
    assert "--overwrite: removed" in log.text()
    assert run_folder.checkpoint_iterations(directory) == [20, 29]


@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_lost_state_file_does_not_restart_from_zero(finished_run, tmp_path, damage):
    logdir, directory = copy_run(finished_run, tmp_path)
    state = os.path.join(directory, "checkpoint")
    if damage == "missing":
        os.remove(state)
    else:
        with open(state, "w") as handle:
            handle.write("model_checkpoint_path: \x00\x17 {{ not a proto")
    log = Log()
    result = experiment.run(sine_cfg(logdir, metatrain_iterations=70), build_task_sources, log=log)
    assert result["resume_itr"] == 60 and result["last_itr"] == 69
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-69")
    # the old checkpoints are still there and listed again
    assert run_folder.checkpoint_iterations(directory) == [20, 40, 59, 60, 69]
    assert 'all_model_checkpoint_paths: "ckpt-20"' in open(state).read()


@pytest.mark.parametrize("how", ["empty index", "truncated index", "truncated data",
                                 "flipped data byte", "missing data"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning(finished_run, tmp_path, how):
    logdir, directory = copy_run(finished_run, tmp_path)
    damage_checkpoint(os.path.join(directory, "ckpt-59"), how)
    # test mode: the damaged one asked for by number is a clear error naming the file
    with pytest.raises(CheckpointError, match=r"ckpt-59 is damaged"):
        experiment.run(sine_cfg(logdir, train=False, test_iter=59, num_test_tasks=5),
                       build_task_sources,
                       log=Log())
    # test mode, newest: falls back, says so, records the iteration it tested
    log = Log()
    result = experiment.run(sine_cfg(logdir, train=False, num_test_tasks=5),
                            build_task_sources, log=log)
    assert "warning: checkpoint" in log.text() and "ckpt-59 is damaged" in log.text()
    assert result["resume_itr"] == 41 and np.all(np.isfinite(result["values"]))
    # training resumes from the intact ckpt-40 and sets the damaged files aside
    log = Log()
    result = experiment.run(sine_cfg(logdir), build_task_sources, log=log)
    assert result["resume_itr"] == 41 and result["last_itr"] == 59
    assert os.listdir(os.path.join(directory, "damaged"))
    assert int(read_var(os.path.join(directory, "ckpt-59"), "iteration")) == 59


def test_every_checkpoint_damaged_is_an_error_not_a_restart(finished_run, tmp_path):
    logdir, directory = copy_run(finished_run, tmp_path)
    for iteration in (20, 40, 59):
        damage_checkpoint(os.path.join(directory, f"ckpt-{iteration}"), "empty index")
    with pytest.raises(CheckpointError, match="every checkpoint .* is damaged"):
        experiment.run(sine_cfg(logdir), build_task_sources, log=Log())


def test_leftovers_of_interrupted_writes_are_removed(finished_run, tmp_path):
    logdir, directory = copy_run(finished_run, tmp_path)
    os.makedirs(os.path.join(directory, "ckpt-60_temp"))
    open(os.path.join(directory, "ckpt-60_temp", "part-00000-of-00001.index"), "w").close()
    open(os.path.join(directory, "ckpt-61.data-00000-of-00001"), "w").close()
    log = Log()
    experiment.run(sine_cfg(logdir), build_task_sources, log=log)
    assert "Removed 2 leftovers" in log.text()
    assert not os.path.exists(os.path.join(directory, "ckpt-60_temp"))
    assert not os.path.exists(os.path.join(directory, "ckpt-61.data-00000-of-00001"))


def test_non_finite_step_stops_before_it_is_applied_or_saved(tmp_path):
    cfg = sine_cfg(tmp_path, metatrain_iterations=50)
    sources = build_task_sources(cfg)
    learner = experiment.build_learner(cfg, sources)
    checkpointer = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                         optimizer=learner.optimizer)
    calls = []

    def train_batches():
        batch = sources.train()
        calls.append(1)
        if len(calls) == 26:   # iteration 25: a NaN label
            batch.labelb[0, 0, 0] = np.nan
        return batch

    with pytest.raises(NonFiniteError, match=r"iteration 25: .*not finite.*last saved: "
                                             r"ckpt-20.*--meta_lr"):
        trainer.train(cfg, learner, trainer.TrainingSources(train_batches), checkpointer,
                      log=Log())
    assert checkpointer.available_iterations() == [20]
    assert learner.weights_finite() and int(learner.optimizer.iterations.numpy()) == 25


def test_test_mode_refuses_non_finite_weights(finished_run, tmp_path):
    logdir, directory = copy_run(finished_run, tmp_path)
    cfg = sine_cfg(logdir)
    learner = experiment.build_learner(cfg, build_task_sources(cfg))
    checkpointer = IterationCheckpointer(directory, model=learner.model,
                                         optimizer=learner.optimizer)
    checkpointer.restore(59)
    next(iter(learner.model.adapted.values())).assign(
        np.full(next(iter(learner.model.adapted.values())).shape, np.nan, "float32"))
    checkpointer.save(80)
    with pytest.raises(CheckpointError, match="ckpt-80 is damaged.*non-finite"):
        experiment.run(sine_cfg(logdir, train=False, test_iter=80, num_test_tasks=5),
                       build_task_sources,
                       log=Log())


def test_an_infinite_scalar_record_is_not_damage_but_nan_and_inf_weights_are(tmp_path):
    """An RL run's ckpt-0 holds best_return = -inf (no iteration yet): a kill -9 right after
    it must resume from it. NaN anywhere, and inf inside a weight array, are damage."""
    from maml_tf.checkpoint import checkpoint_problem

    def saved(name, best, weights):
        checkpoint = tf.train.Checkpoint(best_return=tf.Variable(best, dtype=tf.float64),
                                         weights=tf.Variable(weights, dtype=tf.float32))
        return checkpoint.write(str(tmp_path / name))

    assert checkpoint_problem(saved("fresh", -np.inf, [1.0, 2.0])) is None
    assert "non-finite" in checkpoint_problem(saved("nan_scalar", np.nan, [1.0, 2.0]))
    assert "weights" in checkpoint_problem(saved("inf_weight", 0.0, [1.0, np.inf]))
    assert "weights" in checkpoint_problem(saved("nan_weight", 0.0, [np.nan, 1.0]))


def test_changed_meta_lr_is_applied_on_resume_with_a_line(finished_run, tmp_path):
    logdir, directory = copy_run(finished_run, tmp_path)
    log = Log()
    experiment.run(sine_cfg(logdir, metatrain_iterations=65, meta_lr=0.0004),
                   build_task_sources, log=log)
    assert "Adam's learning rate was 0.001 in ckpt-59; set to 0.0004 from --meta_lr" in log.text()
    assert "metatrain_iterations changed from 60 to 65" in log.text()
    assert read_var(os.path.join(directory, "ckpt-64"),
                    "optimizer/_learning_rate") == pytest.approx(0.0004)
    with pytest.raises(run_folder.RunFolderError, match="--datasource"):
        run_folder.compare_settings(directory, dict(experiment.run_settings(
            sine_cfg(logdir)), datasource="omniglot"), experiment.FIXED_SETTINGS, Log())


def test_failed_checkpoint_write_is_one_clear_error_and_keeps_the_last_good(
        finished_run, tmp_path, monkeypatch):
    logdir, directory = copy_run(finished_run, tmp_path)
    original = tf.train.CheckpointManager.save

    def full_disk(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 80:
            os.makedirs(os.path.join(directory, "ckpt-80_temp"), exist_ok=True)
            raise tf.errors.ResourceExhaustedError(None, None, "ckpt-80_temp/part-00000; No "
                                                   "space left on device")
        return original(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*ckpt-80: .*No "
                                                   r"space left on device; the last good one, "
                                                   r"ckpt-60 is kept"):
        experiment.run(sine_cfg(logdir, metatrain_iterations=100), build_task_sources, log=Log())
    assert run_folder.checkpoint_iterations(directory) == [20, 40, 59, 60]
    assert not glob.glob(os.path.join(directory, "ckpt-80*"))


def test_exported_signatures_check_their_inputs(tmp_path):
    cfg = sine_cfg(tmp_path)
    learner = experiment.build_learner(cfg, build_task_sources(cfg))
    from maml_tf.export import ExportError, export_saved_model
    target = str(tmp_path / "export")
    export_saved_model(learner.model, experiment.inner_loop_spec(cfg), 1, target)
    export_saved_model(learner.model, experiment.inner_loop_spec(cfg), 1, target)  # replaces
    model = tf.saved_model.load(target)
    adapt = model.signatures["adapt_and_predict"]
    ok = adapt(support_inputs=tf.ones([3, 1]), support_labels=tf.ones([3, 1]),
               query_inputs=tf.ones([2, 1]))["predictions"]
    assert ok.shape == (2, 1)
    for kwargs, name in [
            (dict(support_inputs=tf.ones([0, 1]), support_labels=tf.ones([0, 1]),
                  query_inputs=tf.ones([2, 1])), "support_inputs must hold at least one"),
            (dict(support_inputs=tf.ones([3, 1]), support_labels=tf.ones([2, 1]),
                  query_inputs=tf.ones([2, 1])), "support_inputs and support_labels must "
                                                 "have the same number of rows")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=name):
            adapt(**kwargs)
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError),
                       match="inputs"):
        model.signatures["predict"](inputs=tf.ones([4, 3]))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a SavedModel"):
        export_saved_model(learner.model, experiment.inner_loop_spec(cfg), 1,
                           str(tmp_path / "other"))


# ---------------------------------------------------------------------------- as a user does
@pytest.fixture
def own_tmp():
    """A folder outside pytest's numbered tmp_path tree: a concurrent pytest session prunes
    old numbered folders, which would delete a run folder (and its lock) under a subprocess
    that runs for a minute."""
    import tempfile
    path = tempfile.mkdtemp(prefix="crash_safety_")
    yield __import__("pathlib").Path(path)
    shutil.rmtree(path, ignore_errors=True)


def _start(logdir, *flags, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "main.py", *SINE, f"--logdir={logdir}", *flags],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(process, text, timeout=120):
    """Reads stdout lines until one contains ``text``; returns the lines read."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not seen: {lines[-5:]}")


def test_signals_lock_and_kill_as_a_user_meets_them(own_tmp):
    """SIGTERM (what a scheduler or `kill` sends) during training, then SIGINT during the
    save: one save holding exactly its iterations and one line; a second trainer is refused;
    kill -9 then resume continues from the newest intact checkpoint. (SIGINT alone is
    tested on a background RL run in test_crash_safety_rl.py.)"""
    directory = sine_cfg(own_tmp).experiment_dir
    first = _start(own_tmp, "--metatrain_iterations=1000000", "--checkpoint_interval=500")
    _wait_for(first, "Done initializing")
    second = _start(own_tmp, "--metatrain_iterations=1000000")
    try:
        out, err = second.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        second.kill()
        out, err = second.communicate()
    assert first.poll() is None, first.communicate()
    assert second.returncode == 2 and "in use by another training process" in err, out[:3000]
    time.sleep(3)
    first.send_signal(signal.SIGTERM)
    # (sent together, Python would handle the pending SIGINT first: wait for the SIGTERM)
    received = ""
    while not received.splitlines()[-1:] or not received.splitlines()[-1].startswith(
            "SIGTERM received"):
        line = first.stderr.readline()
        assert line, received
        received += line
    first.send_signal(signal.SIGINT)    # a further signal must not cut the save short
    out, err = first.communicate(timeout=120)
    err = received + err
    assert first.returncode == 143, err
    assert "Traceback" not in err
    final = [line for line in err.splitlines() if line.startswith("Stopped by SIGTERM")]
    assert len(final) == 1, err
    saved = int(final[0].split("after iteration ")[1].split(":")[0])
    prefix = os.path.join(directory, f"ckpt-{saved}")
    assert prefix in final[0]
    # ckpt-i holds i + 1 updates (iterations 0..i), no more
    assert int(read_var(prefix, "iteration")) == saved
    assert int(read_var(prefix, "optimizer/_iterations")) == saved + 1

    third = _start(own_tmp, "--metatrain_iterations=1000000", "--checkpoint_interval=200")
    lines = _wait_for(third, "Done initializing")
    assert any(f"ckpt-{saved}" in line for line in lines), lines
    time.sleep(2 + np.random.RandomState(0).uniform(0, 3))
    third.kill()
    third.communicate(timeout=60)
    newest = run_folder.checkpoint_iterations(directory)[-1]   # the index is written last
    assert newest >= saved
    done = _start(own_tmp, f"--metatrain_iterations={newest + 11}")
    out, err = done.communicate(timeout=180)
    assert done.returncode == 0, err
    assert "Taking over the lock" in out and f"ckpt-{newest}\n" in out, out
    assert run_folder.checkpoint_iterations(directory)[-1] == newest + 10


def test_signal_before_the_first_iteration_leaves_a_resumable_folder(own_tmp):
    process = _start(own_tmp, "--metatrain_iterations=50")
    _wait_for(process, "Experiment:")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert "Stopped by SIGTERM outside a training iteration" in err, err
    again = _start(own_tmp, "--metatrain_iterations=50", "--checkpoint_interval=20")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert run_folder.checkpoint_iterations(sine_cfg(own_tmp).experiment_dir) == [20, 40, 49]


# A non-finite --meta_lr is refused by the flags: a case of tests/test_flags.py's table.
