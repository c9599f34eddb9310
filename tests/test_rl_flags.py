"""Bad flags and unknown environments fail fast with one clear line, no traceback."""
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
