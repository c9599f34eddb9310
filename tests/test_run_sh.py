"""run.sh: every Table 1 / section 5.3 name is listed, and the RL names route to rl.main.

The RL round trip is tiny (2 tasks x 2 paths, 1 iteration) but goes through the shell
script itself, so a broken case pattern or flag spelling fails here, not in a user's
overnight run.
"""
import os
import pickle
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SH = os.path.join(ROOT, "run.sh")


def run_sh(*args, logroot, env_extra=None, check=True):
    env = dict(os.environ, LOGROOT=str(logroot), PY=sys.executable, **(env_extra or {}))
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
                 "miniimagenet_1shot_fo", "miniimagenet_5shot_fo", "rl_ENV",
                 "rl_ENV_pretrained", "rl_ENV_oracle", "rl_ENV_random", "rl_ENV_test",
                 "rl_ENV_compare"]:
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
    assert "-40.41" in compared and "-82.66" in compared   # paper's MAML and random rows
    assert (tmp_path / "rl" / "point_curves.png").stat().st_size > 0


def test_rl_training_lines_pass_the_fd_step(tmp_path):
    """Locomotion trains with the released optimizer's FD step (1.0), the point robot with the
    documented one (the flag default); MAML lines add the released checkpoints' settings; a
    stand-in interpreter records the command line."""
    echo = tmp_path / "echo_python"
    echo.write_text('#!/usr/bin/env bash\necho "$@"\n')
    echo.chmod(0o755)
    env = dict(os.environ, LOGROOT=str(tmp_path), PY=str(echo))

    def command(name):
        return subprocess.run([RUN_SH, name], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True).stdout.split()

    for name in ["rl_cheetah_dir", "rl_cheetah_vel_pretrained", "rl_ant_dir_oracle"]:
        args = command(name)
        assert "--fd_base_eps=1.0" in args and "--mode=train" in args, (name, args)
    assert not any(a.startswith("--fd_base_eps") for a in command("rl_point"))
    assert not any(a.startswith("--fd_base_eps") for a in command("rl_cheetah_dir_test"))
    assert "--step_size=0.02" in command("rl_cheetah_dir")          # the released checkpoints
    assert "--fast_batch_size=10" in command("rl_cheetah_vel")
    assert not any(a.startswith("--step_size") for a in command("rl_cheetah_dir_pretrained"))
    assert "--test_init=random" in command("rl_point_random")   # tanh: a flag default now
