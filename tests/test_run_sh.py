"""run.sh: every Table 1 / section 5.3 name is listed, and the RL names route to rl.main.

The RL round trip is tiny (2 tasks x 2 paths, 1 iteration) but goes through the shell
script itself, so a broken case pattern or flag spelling fails here, not in a user's
overnight run.
"""
import json
import os
import pickle
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SH = os.path.join(ROOT, "run.sh")


def run_sh(*args, logroot, env_extra=None, check=True):
    env = {**os.environ, "LOGROOT": str(logroot), "PY": sys.executable, **(env_extra or {})}
    proc = subprocess.run([RUN_SH, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def test_list_names_every_configuration(tmp_path):
    listed = run_sh("list", logroot=tmp_path).stdout
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    for name in ["sinusoid_experiment", "omniglot_5way_1shot", "omniglot_5way_5shot",
                 "omniglot_20way_1shot", "omniglot_20way_5shot", "omniglot_noconv_5way_1shot",
                 "omniglot_noconv_5way_5shot", "miniimagenet_1shot", "miniimagenet_5shot",
                 "miniimagenet_1shot_fo", "miniimagenet_5shot_fo", "rl_point",
                 "rl_cheetah_dir_pretrained", "rl_ant_dir_oracle", "rl_ant_vel_random",
                 "rl_cheetah_vel_test", "rl_ENV_compare"]:
        assert name in names, name
        if not name.startswith(("rl_", "sinusoid_experiment")):
            assert f"{name}_test" in names, name


def test_unknown_names_exit_2_with_a_message(tmp_path):
    for name in ["nonsense", "rl_nowhere", "rl_point_bogus"]:
        proc = run_sh(name, logroot=tmp_path, check=False)
        assert proc.returncode == 2
        assert name in proc.stderr


def test_rl_point_round_trip(tmp_path):
    tiny = ["--meta_batch_size=2", "--fast_batch_size=2", "--max_path_length=10"]
    run_sh("rl_point", *tiny, logroot=tmp_path, env_extra={"RL_ITERS": "1"})
    checkpoints = tmp_path / "rl" / "point_maml" / "checkpoints"
    assert (checkpoints / "ckpt-1.index").exists()
    # running the line again resumes: the second iteration only
    second = run_sh("rl_point", *tiny, logroot=tmp_path, env_extra={"RL_ITERS": "2"})
    assert "resumed" in second.stderr and "itr 1 " in second.stderr
    assert "itr 0 " not in second.stderr
    small_test = ["--test_num_tasks=2", "--test_num_episodes=2", "--max_path_length=10"]
    run_sh("rl_point_test", *small_test, logroot=tmp_path)
    run_sh("rl_point_random", *small_test, logroot=tmp_path)
    for method in ("maml", "random"):
        with open(tmp_path / "rl" / f"point_{method}" / f"test_{method}.pkl", "rb") as handle:
            result = pickle.load(handle)
        assert result["method"] == method and len(result["mean_per_step"]) == 4
    compared = run_sh("rl_point_compare", logroot=tmp_path).stdout
    paper = json.load(open(os.path.join(ROOT, "docs", "paper_numbers.json")))
    for method in ("maml", "random"):   # each row: our value from the file, the paper's
        with open(tmp_path / "rl" / f"point_{method}" / f"test_{method}.pkl", "rb") as handle:
            ours = pickle.load(handle)["mean_per_step"]
        reference = paper["rl_average_return"]["point_2d_navigation"][method]["mean_per_grad_step"]
        rows = [line.split() for line in compared.splitlines()
                if line.split()[:2] == ["point", method]]
        assert [row[3] for row in rows] == [f"{value:.2f}" for value in ours]
        assert [row[5] for row in rows] == [f"{value:.2f}" for value in reference[:4]]
    assert (tmp_path / "rl" / "point_curves.png").exists()


def test_preset_names_route_to_their_entry_point(tmp_path):
    """run.sh passes the preset's name and its environment overrides; what the name expands
    to is tests/test_registry.py's. A stand-in interpreter records the command line."""
    echo = tmp_path / "echo_python"
    echo.write_text('#!/usr/bin/env bash\necho "$@"\n')
    echo.chmod(0o755)

    def command(*args, **env):
        return subprocess.run([RUN_SH, *args], cwd=ROOT, capture_output=True, text=True,
                              check=True, env=dict(os.environ, LOGROOT=str(tmp_path),
                                                   PY=str(echo), **env)).stdout.split()

    assert command("rl_cheetah_dir") == ["-m", "rl.main", "--experiment=rl_cheetah_dir",
                                         f"--logroot={tmp_path}"]
    assert command("rl_point", RL_ITERS="3")[-1] == "--n_itr=3"
    assert command("rl_point_test", RL_ITERS="3")[-1] == f"--logroot={tmp_path}"
    assert command("omniglot_5way_1shot_test", "--test_iter=5", OMNIGLOT="/o") == [
        "main.py", "--experiment=omniglot_5way_1shot_test", f"--logroot={tmp_path}",
        "--omniglot_folder=/o", "--test_iter=5"]
    assert command("miniimagenet_1shot_authors", AUTHORS_CKPT="/a/model9")[:4] == [
        "import_tf1_checkpoint.py", "--experiment=miniimagenet_1shot_authors",
        f"--logroot={tmp_path}", "--tf1_checkpoint=/a/model9"]



def test_rl_compare_takes_every_test_presets_result(tmp_path):
    """rl_ENV_compare passes the result of each of ENV's test presets that exists (the
    registry's list, also the variants), in the table's order; none at all is an error."""
    echo = tmp_path / "echo_python"
    echo.write_text('#!/usr/bin/env bash\necho "$@"\n')
    echo.chmod(0o755)
    logroot = tmp_path / "logs"
    for folder, method in (("point_oracle", "oracle"), ("point_maml", "maml"),
                           ("point_pretrained_multitask", "pretrained"),
                           ("point_pretrained", "pretrained"), ("cheetah_vel_maml", "maml")):
        (logroot / "rl" / folder).mkdir(parents=True)
        (logroot / "rl" / folder / f"test_{method}.pkl").write_bytes(b"")
    (logroot / "rl" / "point_random").mkdir()   # a folder without its result: left out
    proc = run_sh("rl_point_compare", "--paper=p.json", logroot=logroot,
                  env_extra={"PY": str(echo)})
    rl = logroot / "rl"
    assert proc.stdout.split() == [
        "-m", "rl.compare", "--results=" + ",".join(str(p) for p in (
            rl / "point_maml" / "test_maml.pkl", rl / "point_pretrained" / "test_pretrained.pkl",
            rl / "point_pretrained_multitask" / "test_pretrained.pkl",
            rl / "point_oracle" / "test_oracle.pkl")),
        f"--plot={rl}/point_curves.png", "--paper=p.json"]
    missing = run_sh("rl_ant_dir_compare", logroot=logroot, env_extra={"PY": str(echo)},
                     check=False)
    assert missing.returncode == 2 and "no test results for ant_dir" in missing.stderr


def _recorded_commands(tmp_path, *args, env_extra=None):
    """The main.py command lines run.sh would run, from a stand-in interpreter."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "commands.txt"
    echo = tmp_path / "record_python"
    echo.write_text(f'#!/usr/bin/env bash\necho "$@" >> {record}\n')
    echo.chmod(0o755)
    env = dict(os.environ, LOGROOT=str(tmp_path), PY=str(echo), **(env_extra or {}))
    proc = subprocess.run([RUN_SH, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, [line.split() for line in record.read_text().splitlines()]


def test_sinusoid_test_entries_take_k_first(tmp_path):
    """K as the first argument becomes --update_batch_size before the user's flags, so a
    later --update_lr still wins over the preset's K-dependent step."""
    _, [args] = _recorded_commands(tmp_path, "sinusoid_pretrained_test", "5",
                                   "--update_lr=0.003")
    assert args == ["main.py", "--experiment=sinusoid_pretrained_test",
                    f"--logroot={tmp_path}", "--update_batch_size=5", "--update_lr=0.003"]
    _, [args] = _recorded_commands(tmp_path / "s", "sinusoid_lr0.001", env_extra={
        "SINE_ITERS": "50"})
    assert args[-1] == "--metatrain_iterations=50"


def test_sinusoid_experiment_runs_both_methods_at_every_k(tmp_path):
    proc, commands = _recorded_commands(tmp_path, "sinusoid_experiment", "--seed=3",
                                        env_extra={"SINE_ITERS": "123"})
    assert proc.returncode == 0, proc.stderr
    main_runs = [c for c in commands if c and c[0] == "main.py"]
    trainings = [c for c in main_runs if not c[1].endswith("_test")]
    tests = [c for c in main_runs if c[1].endswith("_test")]
    assert sorted(c[1] for c in trainings) == ["--experiment=sinusoid_lr0.001",
                                               "--experiment=sinusoid_pretrained"]
    assert all("--seed=3" in c and f"--logroot={tmp_path}" in c for c in main_runs)
    assert any("--metatrain_iterations=123" in c for c in trainings)
    assert any("--pretrain_iterations=123" in c for c in trainings)
    tested = sorted((c[1], [a for a in c if a.startswith("--update_batch_size=")][-1])
                    for c in tests)
    assert len(tested) == 6 and {k for _, k in tested} == {
        "--update_batch_size=5", "--update_batch_size=10", "--update_batch_size=20"}
    compare = next(c for c in commands if c[:2] == ["-m", "maml_tf.compare"])
    assert "--tables=sinusoid" in compare and "--runs=sine_lr0.001,sine_pretrained" in compare
    assert (tmp_path / "sine_lr0.001" / "test_K20.log").exists()


def test_sinusoid_experiment_screen_is_the_table_without_warnings(tmp_path):
    """The main job end to end (10 iterations, 20 test tasks): its screen has progress lines,
    the table of what was run and the two figure paths, and no warnings or TF chatter."""
    proc = run_sh("sinusoid_experiment", "--num_test_tasks=20", "--xla=off", logroot=tmp_path,
                  env_extra={"SINE_ITERS": "10"})
    screen = proc.stdout + proc.stderr
    assert proc.stderr == ""
    for word in ("warning", "Warning", "Traceback", "oneDNN", "nan", "inf "):
        assert word not in screen, word
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    ours = [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]
            if not r.startswith("|   paper")]
    assert [(r[0], r[1], r[2]) for r in ours] == [
        ("MAML, alpha 0.001 (released code)", "5 (20 tasks)", "0.001"),
        ("MAML, alpha 0.001 (released code)", "10 (20 tasks)", "0.001"),
        ("MAML, alpha 0.001 (released code)", "20 (20 tasks)", "0.001"),
        ("pretrained, fine-tuned", "5 (20 tasks)", "0.01"),
        ("pretrained, fine-tuned", "10 (20 tasks)", "0.02"),
        ("pretrained, fine-tuned", "20 (20 tasks)", "0.02")]
    assert sum(r.startswith("|   paper (Table 2)") for r in rows) == 2
    for figure in ("sinusoid_mse_vs_steps.png", "sinusoid_adaptation.png"):
        path = tmp_path / "figures" / figure
        assert f": {path}" in proc.stdout and path.stat().st_size > 10000


def test_sinusoid_experiment_failure_names_the_log(tmp_path):
    """A failing step stops the job with its log's end on stderr (stand-in interpreter that
    fails like a bad flag would)."""
    failing = tmp_path / "failing_python"
    failing.write_text('#!/usr/bin/env bash\necho "FATAL Flags parsing error: no_such_flag" >&2\n'
                       'exit 1\n')
    failing.chmod(0o755)
    env = dict(os.environ, LOGROOT=str(tmp_path), PY=str(failing))
    proc = subprocess.run([RUN_SH, "sinusoid_experiment"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"the end of {tmp_path}/sine_lr0.001/train.log" in proc.stderr
    assert "no_such_flag" in proc.stderr
    assert "Sinusoid regression" not in proc.stdout   # no table after a failed step
