"""scripts/rl_campaign.py: the RL runs' order, resumption, tests once, a stop ends the chain."""
import os
import pickle

import numpy as np

from tests.scripts import load_script

rl_campaign = load_script("rl_campaign")

RUNS = (rl_campaign.RLRun("a", "rl_point", 3, ("--seed=1",), ("--num_workers=0",), "3"),
        rl_campaign.RLRun("b", "rl_point", 2, ("--seed=2",)),
        rl_campaign.RLRun("r", "rl_point_random", 0, test_preset="rl_point_random"))


class FakeRunSh:
    """Records the commands; training writes checkpoints up to --n_itr, a test its result."""

    def __init__(self, stop_at=None):
        self.commands, self.stop_at = [], stop_at

    def __call__(self, command, logroot):
        self.commands.append(command[1:])
        if self.stop_at is not None and len(self.commands) == self.stop_at:
            return 143                      # as a run stopped by SIGTERM after its save
        args = dict(a[2:].split("=", 1) for a in command[2:])
        if command[1].endswith(("_test", "_random")):   # where rl.main's test writes
            method = "random" if command[1].endswith("_random") else "maml"
            os.makedirs(args["logdir"], exist_ok=True)
            with open(os.path.join(args["logdir"], f"test_{method}.pkl"), "wb") as handle:
                pickle.dump({"mean_per_step": np.array([-40.0, -10.0])}, handle)
        else:
            os.makedirs(os.path.join(args["logdir"], "checkpoints"), exist_ok=True)
            for i in range(1, int(args["n_itr"]) + 1):
                open(os.path.join(args["logdir"], "checkpoints", f"ckpt-{i}.index"), "w").close()
        return 0


def test_runs_train_then_test_in_order_and_resume(tmp_path):
    logroot = str(tmp_path)
    a_dir = os.path.join(logroot, "rl", "a")
    os.makedirs(os.path.join(a_dir, "checkpoints"))
    open(os.path.join(a_dir, "checkpoints", "ckpt-2.index"), "w").close()  # cut short at 2
    assert rl_campaign.iterations_reached(a_dir) == 2
    runner = FakeRunSh()
    assert rl_campaign.train(RUNS, logroot, "run.sh", runner, log=lambda _: None) == 0
    assert runner.commands == [
        ["rl_point", "--n_itr=3", f"--logdir={a_dir}", "--seed=1"],
        ["rl_point_test", f"--logdir={a_dir}", "--test_checkpoint=3", "--num_workers=0"],
        ["rl_point", "--n_itr=2", f"--logdir={logroot}/rl/b", "--seed=2"],
        ["rl_point_test", f"--logdir={logroot}/rl/b", "--test_checkpoint=best"],
        ["rl_point_random", f"--logdir={logroot}/rl/r", "--test_checkpoint=best"]]
    again = FakeRunSh()                     # everything done: nothing runs twice
    assert rl_campaign.train(RUNS, logroot, "run.sh", again, log=lambda _: None) == 0
    assert again.commands == []
    text = rl_campaign.status(RUNS, logroot)
    assert "a: 3 of 3 iterations; test at 3: -40.00 / -10.00 (0..1 steps)" in text


def test_a_stop_ends_the_chain(tmp_path):
    runner = FakeRunSh(stop_at=1)
    assert rl_campaign.train(RUNS, str(tmp_path), "run.sh", runner, log=lambda _: None) == 143
    assert len(runner.commands) == 1        # the test and run b did not start
    assert "a: 0 of 3 iterations" in rl_campaign.status(RUNS, str(tmp_path))


def test_the_queue_names_real_presets():
    from flags.experiments import EXPERIMENTS
    for run in rl_campaign.RUNS:
        assert run.preset in EXPERIMENTS and run.test in EXPERIMENTS
        assert EXPERIMENTS[run.preset].kind == "rl"
        # a test-only run tests its own preset; a training run its test preset
        assert (run.test == run.preset) == (run.iterations == 0)


def test_status_gives_the_time_to_go_at_the_recent_pace(tmp_path):
    """A run cut short says how long the rest takes at the median of its recent iterations."""
    logdir = os.path.join(str(tmp_path), "rl", "a")
    os.makedirs(os.path.join(logdir, "checkpoints"))
    open(os.path.join(logdir, "checkpoints", "ckpt-1.index"), "w").close()
    with open(os.path.join(logdir, "progress.csv"), "w") as handle:
        handle.write("iteration,time_iteration,time_sampling\n0,1000.0,1.0\n1,1800.0,1.0\n"
                     "2,3600.0,1.0\n")
    assert rl_campaign.recent_pace(logdir) == 1800.0
    assert rl_campaign.recent_pace(logdir, last=1) == 3600.0
    text = rl_campaign.status(RUNS, str(tmp_path))
    assert "a: 1 of 3 iterations (median 1800 s per iteration lately: about 1.0 h to go)" in text
    assert "b: 0 of 2 iterations\n" in text   # not started: no pace
