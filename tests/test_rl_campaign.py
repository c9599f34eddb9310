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

    def __call__(self, command, logroot, interrupt_when=None):
        self.commands.append(command[1:])
        if self.stop_at is not None and len(self.commands) == self.stop_at:
            return 143                      # as a run stopped by SIGTERM after its save
        args = dict(a[2:].split("=", 1) for a in command[2:])
        if command[1].endswith(("_test", "_random")):   # where rl.main's test writes
            method = "random" if command[1].endswith("_random") else "maml"
            os.makedirs(args["logdir"], exist_ok=True)
            path = args.get("test_results") or os.path.join(args["logdir"], f"test_{method}.pkl")
            with open(path, "wb") as handle:
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


def test_workers_replace_in_process_sampling_only(tmp_path):
    """--num_workers=2 swaps the in-process flag of MuJoCo runs; the point robot keeps none."""
    queue = {run.folder: run for run in rl_campaign.RUNS}
    ant = rl_campaign.with_workers(queue["ant_vel_maml"], 2)
    assert ant.flags == ("--num_workers=2",) and ant.test_flags == ("--num_workers=2",)
    assert ant.partial_every == queue["ant_vel_maml"].partial_every
    seeded = rl_campaign.with_workers(queue["cheetah_dir_maml_seed2"], 2)
    assert seeded.flags == ("--seed=2", "--num_workers=2")
    assert rl_campaign.with_workers(queue["point_oracle"], 2) == queue["point_oracle"]
    assert rl_campaign.with_workers(queue["ant_vel_maml"], 0) == queue["ant_vel_maml"]
    runner = FakeRunSh()
    assert rl_campaign.train([rl_campaign.with_workers(RUNS[0], 2)], str(tmp_path), "run.sh",
                             runner, log=lambda _: None) == 0
    assert runner.commands[1][-1] == "--num_workers=2"


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


class PausingRunSh(FakeRunSh):
    """Training writes one checkpoint per poll (keeping the five newest, as the trainer) and
    ends early with 143 when the driver's ``interrupt_when`` asks for a pause."""

    def __call__(self, command, logroot, interrupt_when=None):
        if command[1].endswith("_test"):
            return super().__call__(command, logroot)
        self.commands.append(command[1:])
        args = dict(a[2:].split("=", 1) for a in command[2:])
        folder = os.path.join(args["logdir"], "checkpoints")
        os.makedirs(folder, exist_ok=True)
        start = rl_campaign.iterations_reached(args["logdir"])
        for i in range(start + 1, int(args["n_itr"]) + 1):
            open(os.path.join(folder, f"ckpt-{i}.index"), "w").close()
            for old in range(1, i - 4):
                path = os.path.join(folder, f"ckpt-{old}.index")
                if os.path.exists(path):
                    os.remove(path)
            if interrupt_when is not None and interrupt_when():
                open(os.path.join(folder, f"ckpt-{i + 1}.index"), "w").close()  # saves, stops
                return 143
        return 0


def test_a_long_run_pauses_for_a_partial_test_at_each_multiple(tmp_path):
    """partial_every: the run is stopped after passing 4 and 8, each tested from its kept
    checkpoint into test_maml_itrN.pkl, then resumed; the final test is the usual one, and
    status lists the partial results."""
    run = rl_campaign.RLRun("long", "rl_point", 10, (), (), "latest", partial_every=4)
    logroot = str(tmp_path)
    logdir = os.path.join(logroot, "rl", "long")
    runner = PausingRunSh()
    assert rl_campaign.train((run,), logroot, "run.sh", runner, log=lambda _: None) == 0
    assert runner.commands == [
        ["rl_point", "--n_itr=10", f"--logdir={logdir}"],
        ["rl_point_test", f"--logdir={logdir}", "--test_checkpoint=4",
         f"--test_results={logdir}/test_maml_itr4.pkl"],
        ["rl_point", "--n_itr=10", f"--logdir={logdir}"],
        ["rl_point_test", f"--logdir={logdir}", "--test_checkpoint=8",
         f"--test_results={logdir}/test_maml_itr8.pkl"],
        ["rl_point", "--n_itr=10", f"--logdir={logdir}"],
        ["rl_point_test", f"--logdir={logdir}", "--test_checkpoint=latest"]]
    assert os.path.exists(os.path.join(logdir, "test_maml.pkl"))
    assert run.untested_partials(logroot) == []
    text = rl_campaign.status((run,), logroot)
    assert ("long: 10 of 10 iterations; test at latest: -40.00 / -10.00 (0..1 steps); "
            "partial test at 4: -40.00 / -10.00; partial test at 8: -40.00 / -10.00") in text


def test_a_partial_whose_checkpoint_is_gone_is_skipped(tmp_path):
    """A multiple passed while no driver watched, its checkpoint swept: not tested."""
    run = rl_campaign.RLRun("long", "rl_point", 20, (), (), "latest", partial_every=4)
    folder = os.path.join(str(tmp_path), "rl", "long", "checkpoints")
    os.makedirs(folder)
    for i in range(6, 11):   # the five newest after iteration 10: 8 is kept, 4 is gone
        open(os.path.join(folder, f"ckpt-{i}.index"), "w").close()
    assert run.untested_partials(str(tmp_path)) == [8]
    assert rl_campaign.RLRun("short", "rl_point", 20).untested_partials(str(tmp_path)) == []
