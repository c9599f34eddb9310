"""Bad flags and unknown environments fail fast with one clear line, no traceback."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "rl.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--env_name=cheetah"], "unknown environment 'cheetah'"),
    (["--task=antt"], "unknown environment 'antt'"),
    (["--meta_batch_size=0"], "--meta_batch_size must be a positive integer"),
    (["--fast_lr=-0.1"], "--fast_lr must be > 0"),
    (["--hvp=perlmutter"], "hvp"),
    (["--hidden_sizes=100,abc"], "--hidden_sizes must be a comma-separated list"),
    (["--test_checkpoint=newest"], "--test_checkpoint must be"),
    (["--discount=1.5"], "--discount must be in (0, 1]"),
    (["--mode=export"], "--mode=export needs --export_dir"),
])
def test_bad_flags_fail_before_any_work(args, message):
    result = _run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_checkpoint_is_a_usage_error(tmp_path):
    result = _run("--mode=test", f"--logdir={tmp_path}", "--test_num_episodes=2")
    assert result.returncode != 0
    assert "no checkpoint in" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, expected", [
    (["--env_name=point", "--mode=test", "--test_init=random"],
     dict(method="random", fast_lr=0.5, lr_decay=0.5, goal_seed=1, episodes_per_task=40,
          nonlinearity="tanh")),
    (["--env_name=point", "--mode=test"],
     dict(method="maml", nonlinearity="relu", sampling="per_task", sampling_lanes=4)),
    (["--env_name=point", "--mode=test", "--test_sampling=fixed"], dict(sampling="fixed")),
    (["--env_name=cheetah_dir", "--mode=test"],
     dict(method="maml", fast_lr=0.1, lr_decay=0.5, goal_seed=1, episodes_per_task=20)),
    (["--env_name=cheetah_dir", "--mode=test", "--test_init=random"],
     dict(method="random", fast_lr=1.0, nonlinearity="relu")),
    (["--env_name=cheetah_dir", "--mode=test", "--use_maml=False"],
     dict(method="pretrained", fast_lr=0.2)),
    (["--env_name=cheetah_vel", "--mode=test", "--use_maml=False"],
     dict(method="pretrained", fast_lr=0.02)),
    (["--env_name=cheetah_vel", "--mode=test", "--test_init=random"],
     dict(method="random", fast_lr=0.1)),
    (["--env_name=point", "--mode=test", "--oracle", "--use_maml=False"],
     dict(method="oracle", fast_lr=0.0)),
    (["--env_name=ant_dir", "--mode=test"],
     dict(method="maml", fast_lr=0.1, lr_decay=0.01, goal_seed=2, episodes_per_task=40)),
    (["--env_name=point", "--mode=test", "--test_init=random", "--test_fast_lr=0.3",
      "--test_lr_decay=1", "--test_goal_seed=5", "--hidden_nonlinearity=relu"],
     dict(method="random", fast_lr=0.3, lr_decay=1.0, goal_seed=5, nonlinearity="relu")),
    (["--env_name=ant_vel", "--mode=test", "--test_init=random", "--test_fast_lr=0.3",
      "--test_lr_decay=1", "--test_goal_seed=5"],
     dict(method="random", fast_lr=0.3, lr_decay=1.0, goal_seed=5, episodes_per_task=20)),
])
def test_test_protocol_defaults_follow_the_released_test_scripts(args, expected):
    """maml_rl's test_maml_*.py step sizes, batch sizes, goal seeds and (point random
    baseline) nonlinearity per task and method; an explicit flag wins."""
    script = ("import dataclasses, json, sys; from rl import main; main.FLAGS(sys.argv); "
              "config = dataclasses.asdict(main.eval_config()); "
              "config['nonlinearity'] = main.train_config().policy.nonlinearity; "
              "print(json.dumps(config))")
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads(result.stdout.strip().splitlines()[-1])
    assert {key: config[key] for key in expected} == expected
