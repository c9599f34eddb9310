"""Flags: the original's defaults, and clear errors for bad values before any work starts.

Flag modules register on absl's global FLAGS, so they are exercised in subprocesses (as a
user runs them), which also keeps them apart from the RL flags.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The original main.py's flags and defaults (PROTOCOL.md).
ORIGINAL_DEFAULTS = {
    "datasource": "sinusoid", "num_classes": 5, "baseline": None, "pretrain_iterations": 0,
    "metatrain_iterations": 15000, "meta_batch_size": 25, "meta_lr": 0.001,
    "update_batch_size": 5, "update_lr": 0.001, "num_updates": 1, "norm": "batch_norm",
    "num_filters": 64, "conv": True, "max_pool": False, "stop_grad": False, "log": True,
    "logdir": "/tmp/data", "resume": True, "train": True, "test_iter": -1, "test_set": False,
    "train_update_batch_size": -1, "train_update_lr": -1,
}


def run_main(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_flag_defaults_equal_the_original():
    script = ("import json, sys; from absl import flags as absl_flags; import flags.supervised; "
              "F = absl_flags.FLAGS; F(['x']); "
              "print(json.dumps({n: F[n].value for n in F if n in json.loads(sys.argv[1])}))")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(ORIGINAL_DEFAULTS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ORIGINAL_DEFAULTS


def test_every_flag_has_help_text():
    script = ("from absl import flags as absl_flags; import flags.supervised; F = absl_flags.FLAGS; "
              "print([n for n, f in F._flags().items() "
              "if f.help in (None, '', '<no description>') and "
              "F.find_module_defining_flag(n) == 'flags.supervised'])")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("args, message", [
    (["--datasource=cifar"], "datasource"),
    (["--meta_batch_size=0"], "--meta_batch_size must be a positive integer"),
    (["--num_updates=-1"], "--num_updates must be a positive integer"),
    (["--update_lr=0"], "--update_lr must be > 0"),
    (["--metatrain_iterations=-5"], "--metatrain_iterations must be >= 0"),
    (["--datasource=omniglot", "--baseline=oracle"], "only defined for --datasource=sinusoid"),
    (["--baseline=context"], "--baseline must be 'oracle'"),
    (["--datasource=omniglot", "--num_classes=200"], "--num_classes is larger"),
    (["--datasource=miniimagenet", "--num_classes=21", "--train=False", "--test_set=True"],
     "--num_classes is larger"),
    (["--datasource=omniglot", "--update_batch_size=11"], "20 drawings per character"),
    (["--logdir=/proc/forbidden/x"], "--logdir must be a directory"),
    (["--norm=group_norm"], "norm"),
])
def test_bad_flags_fail_with_a_clear_message(args, message):
    done = run_main(*args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_data_folder_names_the_flag(tmp_path):
    done = run_main("--datasource=omniglot", f"--omniglot_folder={tmp_path}/nothing",
                    f"--logdir={tmp_path}/logs", timeout=300)
    assert done.returncode == 2
    assert "--omniglot_folder" in done.stderr and "prepare_omniglot" in done.stderr
    assert "Traceback" not in done.stderr


def test_testing_without_a_checkpoint_is_a_clear_error(tmp_path):
    done = run_main("--train=False", f"--logdir={tmp_path}", "--norm=None", timeout=300)
    assert done.returncode == 2
    assert "no checkpoint to test" in done.stderr and "Traceback" not in done.stderr
