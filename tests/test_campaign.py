"""The campaign tools: status from what a run wrote, and packing that keeps what status needs."""
import os
import pickle
import sys

import numpy as np
import tensorflow as tf

from tests.scripts import load_script


campaign = load_script("campaign")
pack = load_script("pack_checkpoints")
runner_module = load_script("forwarding")

FO_DIR = "miniimagenet1shot/cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolstopgradbatchnorm"


def _fake_run(directory, checkpoints=(10000, 11000, 12000)):
    """A MiniImagenet first-order run: checkpoints, validation events, one milestone."""
    os.makedirs(directory, exist_ok=True)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), directory,
                                         max_to_keep=None, checkpoint_name="ckpt")
    for itr in checkpoints:
        manager.save(checkpoint_number=itr)
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for step, accuracy in ((500, 0.30), (1000, 0.40), (1500, 0.50)):
            tf.summary.scalar("metaval_Post-update accuracy, step 5", accuracy, step=step)
            tf.summary.scalar("metaval_Post-update accuracy, step 1", 0.1, step=step)
    writer.flush()
    os.makedirs(os.path.join(directory, "milestones"))
    values = np.full((600, 11), 0.45)
    values[:300, -1] = 0.40  # mean 0.425, std 0.025
    with open(os.path.join(directory, "milestones", "itr10000_test_ubs1_stepsize0.01.pkl"),
              "wb") as f:
        pickle.dump({"mses": values, "iteration": 10000}, f)


def test_status_reports_iterations_validation_and_milestones(tmp_path):
    _fake_run(str(tmp_path / FO_DIR))
    table, started = campaign.status(str(tmp_path), campaign.load_paper_numbers())
    rows = [line for line in table.splitlines() if "miniimagenet_1shot_fo" in line]
    assert len(rows) == 1 and len(started) == 1
    row = rows[0]
    assert "12,001 of 60,000" in row
    assert "40.0% (step 5, up to it. 1500)" in row  # the most inner steps, mean of the last 5
    ci = 100 * 1.96 * 0.025 / np.sqrt(600)
    assert f"10,000: 42.50 +- {ci:.2f}" in row
    assert "48.07 +- 1.75" in row  # the paper's first-order 1-shot number
    assert "miniimagenet_1shot |" not in table  # runs never started are not listed
    path = campaign.plot(started, campaign.load_paper_numbers(), str(tmp_path / "c.png"))
    assert os.path.getsize(path) > 10000


def test_status_gives_the_final_tests_spread_over_task_sets(tmp_path):
    """The final test on the original's tasks and on --test_seed sets: mean and range."""
    directory = str(tmp_path / FO_DIR)
    _fake_run(directory, checkpoints=(59999,))
    for name, accuracy in (("", 0.48), ("_testseed1", 0.46), ("_testseed3", 0.47)):
        with open(os.path.join(directory, f"test_ubs1_stepsize0.01{name}.pkl"), "wb") as f:
            pickle.dump({"mses": np.full((600, 11), accuracy), "iteration": 59999}, f)
    table, started = campaign.status(str(tmp_path), campaign.load_paper_numbers())
    row = [line for line in table.splitlines() if "miniimagenet_1shot_fo" in line][0]
    assert "48.00 +- 0.00 (ckpt 59,999); with test seeds 1, 3: mean 47.00, range " \
           "46.00-48.00 over 3 task sets" in row
    assert sorted(started[0]["seeds"]) == [1, 3]
    assert "| 60,000 of 60,000 | 0.0 h | - |" in row   # nothing left to project


def test_training_time_leaves_out_pauses_between_sessions():
    times = [0, 100, 200, 200 + campaign.PAUSE_SECONDS + 1, 200 + campaign.PAUSE_SECONDS + 51]
    assert campaign.training_seconds(times) == 250


def test_pace_is_the_median_of_recent_forward_gaps_within_a_session():
    """Seconds per iteration from (wall time, step) of the summaries: a pause between sessions,
    a resume that went back to a checkpoint and several tags at one step do not count."""
    pause = campaign.PAUSE_SECONDS
    progress = [(0, 0), (50, 100), (50.1, 100), (100.1, 200),         # 0.5 s/it.
                (100 + pause + 1, 150), (100 + pause + 31, 200),      # back, then 0.6
                (100 + pause + 131, 300), (100 + pause + 231, 400)]   # 1.0 s/it. lately
    # rates 0.5, 0.5, 0.6, 1.0, 1.0: the session pause and the step back are not among them
    assert abs(campaign.recent_seconds_per_iteration(progress) - 0.6) < 1e-9
    assert campaign.recent_seconds_per_iteration(progress, intervals=2) == 1.0
    assert campaign.recent_seconds_per_iteration([(0, 0)]) is None


def test_status_projects_the_time_to_the_last_iteration(tmp_path):
    directory = str(tmp_path / FO_DIR)
    _fake_run(directory)
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for step in (1600, 1700):
            tf.summary.scalar("metatrain_Pre-update loss", 1.0, step=step)
    writer.flush()
    table, _ = campaign.status(str(tmp_path), campaign.load_paper_numbers())
    header, row = table.splitlines()[0], [line for line in table.splitlines()
                                          if "miniimagenet_1shot_fo" in line][0]
    column = header.split(" | ").index("to 60,000 at the latest pace")
    assert row.split(" | ")[column].endswith("s/it.)")   # 47,999 iterations to go at a pace


def test_pack_keeps_newest_milestones_events_and_results(tmp_path):
    logs = tmp_path / "logs"
    run = logs / FO_DIR
    _fake_run(str(run))
    (run / "test_ubs1_stepsize0.01.csv").write_text("update0\n0\n0\n0\n")
    written = pack.pack_directory(str(run), str(tmp_path / "packed"), keep_every=10000,
                                  logs_root=str(logs))
    target = tmp_path / "packed" / FO_DIR
    names = set(os.listdir(target))
    assert {"ckpt-12000.index", "ckpt-10000.index", "test_ubs1_stepsize0.01.csv",
            "milestones", "checkpoint"} <= names
    assert not any(n.startswith("ckpt-11000") for n in names)
    assert any(n.startswith("events.out.tfevents.") for n in names)
    assert tf.train.latest_checkpoint(str(target)).endswith("ckpt-12000")
    assert len(written) >= 6
    # Unpacked elsewhere, status still reads the same run.
    table, _ = campaign.status(str(target.parent.parent), campaign.load_paper_numbers())
    assert "12,001 of 60,000" in table and "10,000: 42.50" in table


def _replace_newest_checkpoint(run, old, new):
    """What a training run's CheckpointManager does: saves ``ckpt-{new}``, deletes ``old``."""
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(2.0)), str(run),
                                         max_to_keep=None, checkpoint_name="ckpt")
    manager.save(checkpoint_number=new)
    for name in os.listdir(run):
        if name.startswith(f"ckpt-{old}."):
            os.remove(run / name)


def test_pack_again_replaces_the_copy_whole(tmp_path):
    """A second pack after more training swaps the new copy in: the newest checkpoint is the
    new one, the superseded one is gone and no staging folder is left."""
    logs = tmp_path / "logs"
    run = logs / FO_DIR
    _fake_run(str(run))
    out = tmp_path / "packed"
    pack.pack_directory(str(run), str(out), keep_every=10000, logs_root=str(logs))
    _replace_newest_checkpoint(run, 12000, 13000)
    assert pack.pack_folders([str(logs)], str(out), keep_every=10000, logs_root=str(logs))
    target = out / FO_DIR
    assert tf.train.latest_checkpoint(str(target)).endswith("ckpt-13000")
    assert not any(n.startswith("ckpt-12000") for n in os.listdir(target))
    assert sorted(os.listdir(target.parent)) == [os.path.basename(FO_DIR)]


def test_pack_starts_again_when_training_replaces_the_newest_checkpoint(tmp_path, monkeypatch):
    """The training deletes its older checkpoint after writing a newer one: a copy that
    meets the deletion starts again and packs the newer one."""
    logs = tmp_path / "logs"
    run = logs / FO_DIR
    _fake_run(str(run))
    copy = pack.shutil.copy2
    calls = []

    def racing_copy(source, destination):
        if not calls and "ckpt-12000" in source:   # meanwhile: 13,000 saved, 12,000 deleted
            calls.append(source)
            _replace_newest_checkpoint(run, 12000, 13000)
            raise FileNotFoundError(source)
        return copy(source, destination)

    monkeypatch.setattr(pack.shutil, "copy2", racing_copy)
    out = tmp_path / "packed"
    assert pack.pack_directory(str(run), str(out), keep_every=10000, logs_root=str(logs))
    target = out / FO_DIR
    assert calls and tf.train.latest_checkpoint(str(target)).endswith("ckpt-13000")
    assert "ckpt-10000.index" in os.listdir(target)
    assert sorted(os.listdir(target.parent)) == [os.path.basename(FO_DIR)]


def test_pack_recovers_a_copy_cut_between_its_renames(tmp_path):
    """Killed after the old copy was moved aside and before the new one was in place: the
    next pack puts the old one back first, then replaces it."""
    logs = tmp_path / "logs"
    run = logs / FO_DIR
    _fake_run(str(run))
    out = tmp_path / "packed"
    pack.pack_directory(str(run), str(out), keep_every=10000, logs_root=str(logs))
    target = out / FO_DIR
    os.rename(target, str(target) + ".old")
    (logs / "elsewhere").mkdir()
    assert pack.pack_folders([str(logs / "elsewhere")], str(out), logs_root=str(logs)) == []
    # the old copy is back and current: nothing to write
    assert pack.pack_directory(str(run), str(out), keep_every=10000, logs_root=str(logs)) == []
    assert tf.train.latest_checkpoint(str(target)).endswith("ckpt-12000")
    _replace_newest_checkpoint(run, 12000, 13000)
    assert pack.pack_directory(str(run), str(out), keep_every=10000, logs_root=str(logs))
    assert sorted(os.listdir(target.parent)) == [os.path.basename(FO_DIR)]
    assert tf.train.latest_checkpoint(str(target)).endswith("ckpt-13000")


def _campaign_run(tmp_path, name, reached, milestone=True):
    """A run dict as campaign_runs gives it, with checkpoint files up to ``reached``."""
    from maml_tf.config import ExperimentConfig
    directory = tmp_path / name
    directory.mkdir()
    for itr in ([10000] if milestone and reached > 10000 else []) + ([reached - 1] if reached
                                                                      else []):
        (directory / f"ckpt-{itr}.index").write_text("")
    cfg = ExperimentConfig(datasource="miniimagenet", update_batch_size=1, update_lr=0.01)
    return dict(name=name, directory=str(directory), cfg=cfg)


class FakeRunSh:
    """Plays run.sh: training completes the run (or stops with ``stop_status``); a test
    writes the result files test mode writes."""

    def __init__(self, runs, stop_status=None, milestones_on_the_way=()):
        self.runs = {run["name"]: run for run in runs}
        self.stop_status = stop_status
        self.on_the_way = list(milestones_on_the_way)
        self.calls = []

    def __call__(self, command, logroot, interrupt_when=None):
        _, name, *flags = command
        self.calls.append(" ".join([name, *flags]))
        if name.endswith("_test"):
            directory = self.runs[name[:-len("_test")]]["directory"]
            values = np.full((600, 6), 0.5)
            seed = [f.split("=")[1] for f in flags if f.startswith("--test_seed=")]
            base = "test_ubs1_stepsize0.01" + (f"_testseed{seed[0]}" if seed else "")
            with open(os.path.join(directory, base + ".pkl"), "wb") as f:
                pickle.dump({"mses": values}, f)
            with open(os.path.join(directory, base + ".csv"), "w") as f:
                f.write("update0\n0.5\n0.5\n0.5\n")
            return 0
        directory = self.runs[name]["directory"]
        if self.on_the_way:  # training passes a milestone; the driver's poll sees it
            open(os.path.join(directory, f"ckpt-{self.on_the_way.pop(0)}.index"), "w").close()
            if interrupt_when():
                return 143  # what the trainer returns after saving on SIGTERM
        if self.stop_status is not None:
            return self.stop_status
        open(os.path.join(directory, "ckpt-59999.index"), "w").close()
        return 0


def test_train_resumes_in_order_then_tests_and_stops_on_a_signal(tmp_path):
    """The unattended campaign: a complete run gets its final and milestone tests, the next
    one is resumed; a stopped training run (SIGTERM: 143) ends the chain untested."""
    done = _campaign_run(tmp_path, "first", 60000)
    partial = _campaign_run(tmp_path, "second", 4000)
    later = _campaign_run(tmp_path, "third", 0)
    fake = FakeRunSh([done, partial, later], stop_status=143)
    lines = []
    code = campaign.train([done, partial, later], str(tmp_path), 10000, "run.sh", fake,
                          lines.append)
    assert code == 143
    seeds = [f"first_test --test_seed={n}" for n in campaign.FINAL_TEST_SEEDS]
    assert fake.calls == ["first_test", *seeds, "first_test --test_iter=10000", "second"]
    assert os.path.exists(os.path.join(done["directory"], "milestones",
                                       "itr10000_test_ubs1_stepsize0.01.pkl"))
    assert os.path.exists(os.path.join(done["directory"], "test_ubs1_stepsize0.01.pkl"))
    assert "second stopped with status 143" in lines[-1]
    # Run again: nothing is tested twice, the second run completes and the third starts.
    fake = FakeRunSh([done, partial, later])
    assert campaign.train([done, partial, later], str(tmp_path), 10000, "run.sh", fake,
                          lines.append) == 0
    assert fake.calls == ["second", "second_test",
                          *(f"second_test --test_seed={n}" for n in campaign.FINAL_TEST_SEEDS),
                          "third", "third_test",
                          *(f"third_test --test_seed={n}" for n in campaign.FINAL_TEST_SEEDS)]
    assert lines[-1] == "campaign: every run complete and tested"


def test_pack_keeps_an_rl_runs_results_beside_its_checkpoint_folders(tmp_path):
    """RL runs keep checkpoints in checkpoints/ and best/, test results one level up."""
    run = tmp_path / "logs" / "rl" / "cheetah_dir_maml_seed1"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                                         str(run / "checkpoints"), max_to_keep=1)
    manager.save(checkpoint_number=100)
    for name in ("test_maml.pkl", "test_maml.csv", "progress.csv", "config.json", "notes.txt"):
        (run / name).write_text("x")
    out = tmp_path / "packed"
    assert pack.pack_run_results(str(run), str(out), logs_root=str(tmp_path / "logs"))
    assert pack.pack_run_results(str(run / "checkpoints"), str(out),
                                 logs_root=str(tmp_path / "logs")) == []
    packed = sorted(os.listdir(out / "rl" / "cheetah_dir_maml_seed1"))
    assert packed == ["config.json", "progress.csv", "test_maml.csv", "test_maml.pkl"]


def test_pack_keeps_a_test_only_runs_results(tmp_path):
    """A random baseline is a test without training: its results are packed all the same,
    and a folder with neither checkpoints nor test results is not."""
    logs = tmp_path / "logs"
    run = logs / "rl" / "ant_vel_random"
    run.mkdir(parents=True)
    for name in ("test_random.pkl", "test_random.csv", "notes.txt"):
        (run / name).write_text("x")
    (logs / "rl" / "empty").mkdir()
    (logs / "rl" / "empty" / "progress.csv").write_text("x")
    out = tmp_path / "packed"
    assert pack.pack_run_results(str(logs / "rl" / "empty"), str(out), logs_root=str(logs)) == []
    assert pack.pack_run_results(str(run), str(out), logs_root=str(logs))
    assert sorted(os.listdir(out / "rl")) == ["ant_vel_random"]
    assert sorted(os.listdir(out / "rl" / "ant_vel_random")) == ["test_random.csv",
                                                                 "test_random.pkl"]


def test_train_tests_passed_milestones_before_resuming(tmp_path):
    """A run that passed 10,000 iterations in an earlier sitting is tested there first, once."""
    partial = _campaign_run(tmp_path, "partial", 12000)
    fake = FakeRunSh([partial], stop_status=143)
    assert campaign.train([partial], str(tmp_path), 10000, "run.sh", fake, print) == 143
    assert fake.calls == ["partial_test --test_iter=10000", "partial"]
    assert os.path.exists(os.path.join(partial["directory"], "milestones",
                                       "itr10000_test_ubs1_stepsize0.01.pkl"))
    fake = FakeRunSh([partial], stop_status=143)
    campaign.train([partial], str(tmp_path), 10000, "run.sh", fake, print)
    assert fake.calls == ["partial"]


def test_train_tests_a_milestone_as_soon_as_training_passes_it(tmp_path):
    """Training that passes 20,000 and 30,000 is paused at each (its SIGTERM save), the
    milestone tested, training resumed: one test per milestone, never beside training."""
    partial = _campaign_run(tmp_path, "partial", 12000)
    fake = FakeRunSh([partial], milestones_on_the_way=(20000, 30000))
    lines = []
    assert campaign.train([partial], str(tmp_path), 10000, "run.sh", fake, lines.append) == 0
    assert fake.calls == ["partial_test --test_iter=10000", "partial",
                          "partial_test --test_iter=20000", "partial",
                          "partial_test --test_iter=30000", "partial", "partial_test",
                          *(f"partial_test --test_seed={n}" for n in campaign.FINAL_TEST_SEEDS)]
    assert sum("paused at a milestone" in line for line in lines) == 2
    tested = sorted(f for f in os.listdir(os.path.join(partial["directory"], "milestones"))
                    if f.endswith(".pkl"))
    assert tested == [f"itr{i}_test_ubs1_stepsize0.01.pkl" for i in (10000, 20000, 30000)]


def test_an_outside_signal_is_not_taken_for_a_milestone_pause(tmp_path):
    """SIGTERM from outside while a milestone is pending still ends the chain."""
    partial = _campaign_run(tmp_path, "partial", 12000)

    class StoppedOnTheWay(FakeRunSh):
        def __call__(self, command, logroot, interrupt_when=None):
            code = super().__call__(command, logroot, interrupt_when)
            return code if command[1].endswith("_test") else 143

    fake = StoppedOnTheWay([partial])
    assert campaign.train([partial], str(tmp_path), 10000, "run.sh", fake, print) == 143
    assert fake.calls == ["partial_test --test_iter=10000", "partial"]


def _saving_run_sh(tmp_path, save_seconds):
    """A run.sh whose Python child writes ``ready`` once it runs and, on SIGTERM, takes
    ``save_seconds`` to "save" (writes ``saved``) before exiting with 143. Returns the script
    and the two marker paths; the child's source is in $CHILD while the test runs it."""
    import subprocess

    marker, ready = tmp_path / "saved", tmp_path / "ready"
    child = (f"import signal, sys, time\n"
             f"def stop(*_):\n"
             f"    time.sleep({save_seconds})\n"
             f"    open({str(marker)!r}, 'w').close()\n"
             f"    sys.exit(143)\n"
             f"signal.signal(signal.SIGTERM, stop)\n"
             f"open({str(ready)!r}, 'w').close()\n"
             f"time.sleep(60)\n")
    script = tmp_path / "run.sh"
    script.write_text(f"#!/usr/bin/env bash\n{subprocess.list2cmdline([sys.executable])} "
                      f"-c \"$CHILD\"\n")
    script.chmod(0o755)
    return script, marker, ready, child


def test_forwarding_ends_a_command_when_asked_and_waits_for_its_save(tmp_path):
    """interrupt_when, polled while the command runs, ends it with SIGTERM; the call returns
    after the command's save, with its status, and the runner is not marked stopped."""
    script, marker, ready, child = _saving_run_sh(tmp_path, 0.5)
    os.environ["CHILD"] = child
    try:
        forwarding = runner_module.ForwardingRunner(poll_seconds=0.1)
        code = forwarding([str(script), "x"], str(tmp_path), interrupt_when=ready.exists)
    finally:
        del os.environ["CHILD"]
    assert code == 143 and marker.exists() and forwarding.stopped is None


def test_train_passes_a_signal_on_and_waits_for_the_save(tmp_path):
    """SIGTERM reaches the Python process that run.sh's bash started, and the driver returns
    only after it has finished saving (bash itself dies at once)."""
    import signal
    import threading
    import time

    script, marker, ready, child = _saving_run_sh(tmp_path, 1.5)
    os.environ["CHILD"] = child
    try:
        forwarding, result = runner_module.ForwardingRunner(), []
        thread = threading.Thread(target=lambda: result.append(
            forwarding([str(script), "x"], str(tmp_path))))
        thread.start()
        deadline = time.time() + 30
        while not ready.exists():
            assert time.time() < deadline
            time.sleep(0.05)
        forwarding.handle(signal.SIGTERM, None)
        thread.join(30)
    finally:
        del os.environ["CHILD"]
    assert not thread.is_alive()
    assert marker.exists()          # returned only after the save
    assert result == [143]
    assert forwarding([str(script), "x"], str(tmp_path)) == 128 + signal.SIGTERM  # no restart


def test_train_keeps_the_command_in_the_drivers_session(tmp_path):
    """A low-priority campaign stays low priority: the command gets its own process group
    (for the signals) but stays in the driver's session, whose autogroup nice it shares."""
    import subprocess

    script = tmp_path / "run.sh"
    script.write_text(f"#!/usr/bin/env bash\n{sys.executable} -c 'import os; "
                      f"print(os.getsid(0), os.getpgid(0))' > \"$OUT\"\n")
    script.chmod(0o755)
    os.environ["OUT"] = str(tmp_path / "ids")
    try:
        assert runner_module.ForwardingRunner()([str(script), "x"], str(tmp_path)) == 0
    finally:
        del os.environ["OUT"]
    sid, pgid = (int(v) for v in (tmp_path / "ids").read_text().split())
    assert sid == os.getsid(0) and pgid != os.getpgid(0)


def _git(repo, *args):
    import subprocess
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def test_pack_commit_takes_only_the_packed_paths(tmp_path):
    """--commit puts each pack into the history (a session may end with its working tree
    lost) without sweeping up what else is staged, and makes no empty commits."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.name", "t")
    _git(repo, "config", "user.email", "t@example.invalid")
    (repo / "README.md").write_text("one\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "start")
    (repo / "README.md").write_text("two\n")
    _git(repo, "add", "README.md")                    # staged work of the session
    logs, packed = repo / "logs", repo / "checkpoints"
    run = logs / FO_DIR
    _fake_run(str(run))
    pack.pack_directory(str(run), str(packed), keep_every=10000, logs_root=str(logs))
    commit = pack.commit_packed(str(packed))
    assert commit and _git(repo, "rev-parse", "--short", "HEAD").strip() == commit
    message = _git(repo, "log", "-1", "--format=%s")
    assert f"{FO_DIR} ckpt-12000" in message
    files = _git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert f"checkpoints/{FO_DIR}/ckpt-12000.index" in files
    assert "README.md" not in files
    assert _git(repo, "diff", "--cached", "--name-only").split() == ["README.md"]
    assert pack.commit_packed(str(packed)) is None                # nothing new
    # the training moves on: the next pack's commit records the deletion of the old newest
    _replace_newest_checkpoint(run, 12000, 13000)
    pack.pack_directory(str(run), str(packed), keep_every=10000, logs_root=str(logs))
    assert pack.commit_packed(str(packed))
    assert "ckpt-13000" in _git(repo, "log", "-1", "--format=%s")
    files = _git(repo, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert f"checkpoints/{FO_DIR}/ckpt-13000.index" in files
    assert f"checkpoints/{FO_DIR}/ckpt-12000.index" not in files
    assert not _git(repo, "status", "--porcelain", "--", "checkpoints").strip()


def test_pack_commit_outside_a_repository_is_refused_first(tmp_path, monkeypatch):
    import pytest
    (tmp_path / "logs").mkdir()
    monkeypatch.setattr(sys, "argv", ["pack_checkpoints.py", "--commit",
                                      f"--out={tmp_path / 'out'}", str(tmp_path / "logs")])
    with pytest.raises(SystemExit) as stop:
        pack.main()
    assert "--commit" in str(stop.value) and "not inside a git repository" in str(stop.value)


def test_pack_leaves_an_unchanged_run_alone_and_follows_new_runs(tmp_path):
    """Packing ``logs`` whole: a second round writes nothing for a run that did not change
    (also after a restore by ``cp -r``, which drops modification times), repacks one whose
    newest checkpoint or event file changed, and picks up a run started since."""
    logs = tmp_path / "logs"
    run = logs / FO_DIR
    _fake_run(str(run))
    rl_run = logs / "rl" / "ant_vel_maml"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                                         str(rl_run / "checkpoints"), max_to_keep=1)
    manager.save(checkpoint_number=120)
    (rl_run / "progress.csv").write_text("itr\n120\n")
    out = tmp_path / "packed"
    assert pack.pack_folders([str(logs)], str(out), logs_root=str(logs))
    assert pack.pack_folders([str(logs)], str(out), logs_root=str(logs)) == []

    packed_index = out / FO_DIR / "ckpt-12000.index"
    os.utime(packed_index, ns=(0, 0))   # as cp -r leaves it: other time, same bytes
    assert pack.pack_folders([str(logs)], str(out), logs_root=str(logs)) == []

    (rl_run / "progress.csv").write_text("itr\n120\n121\n")
    manager.save(checkpoint_number=121)
    written = pack.pack_folders([str(logs)], str(out), logs_root=str(logs))
    assert {os.path.relpath(w, out) for w in written} >= {
        os.path.join("rl", "ant_vel_maml", "progress.csv"),
        os.path.join("rl", "ant_vel_maml", "checkpoints", "ckpt-121.index")}
    assert not any(FO_DIR in w for w in written)
    assert (out / "rl" / "ant_vel_maml" / "progress.csv").read_text().endswith("121\n")

    with open(run / "milestones" / "itr10000_test_ubs1_stepsize0.01.pkl", "ab") as f:
        f.write(b"more")   # a result rewritten: the run is packed again
    assert any(FO_DIR in w for w in pack.pack_folders([str(logs)], str(out),
                                                      logs_root=str(logs)))

    later = logs / "omniglot5way5shot" / "cls_5.mbs_32.ubs_5.numstep1.updatelr0.4batchnorm"
    _fake_run(str(later), checkpoints=(500,))
    written = pack.pack_folders([str(logs)], str(out), logs_root=str(logs))
    assert written and all("omniglot5way5shot" in w for w in written)
    assert tf.train.latest_checkpoint(str(out / os.path.relpath(later, logs))).endswith("ckpt-500")
