"""Flags: the original's defaults, and clear errors for bad values before any work starts.

Flag modules register on absl's global FLAGS, so they are exercised in subprocesses (through
main.py's own entry, as a user runs it), which also keeps them apart from the RL flags.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.entry_driver import run_cases

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


# Every case runs through main.py's own entry, all in one process (tests/entry_driver.py).
BAD_FLAGS = [
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
    (["--meta_lr=inf"], "--meta_lr must be > 0 and finite"),
    (["--meta_lr=nan"], "--meta_lr must be > 0 and finite"),
    (["--intra_op_threads=-2"], "--intra_op_threads must be -1 (automatic)"),
    (["--task_groups=0"], "--task_groups must be -1 (automatic) or a positive integer"),
    # --distribute (maml_tf/distribute.py): refused before any work
    (["--distribute=mirrored", "--num_cpu_devices=3", "--meta_batch_size=4"],
     "--meta_batch_size=4 is not divisible by --num_cpu_devices=3"),
    (["--num_cpu_devices=2"], "--num_cpu_devices=2 needs --distribute=mirrored"),
    (["--distribute=mirrored", "--num_cpu_devices=0"], "--num_cpu_devices must be >= 1"),
    (["--distribute=ring"], "distribute"),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case's outcome, computed in one process; each case that does not
    name a --logdir gets an empty one of its own, checked afterwards for leftovers."""
    root = tmp_path_factory.mktemp("flag_cases")
    cases = {}
    for i, (args, _) in enumerate(BAD_FLAGS):
        has_logdir = any(a.startswith("--logdir=") for a in args)
        cases[f"bad{i}"] = args if has_logdir else [f"--logdir={root / f'bad{i}'}", *args]
    cases["missing_data"] = ["--datasource=omniglot", f"--omniglot_folder={root}/nothing",
                             f"--logdir={root}/logs"]
    cases["no_checkpoint"] = ["--train=False", f"--logdir={root}/empty", "--norm=None"]
    return {"root": root, **run_cases("supervised", cases, ROOT)}


@pytest.mark.parametrize("index", range(len(BAD_FLAGS)))
def test_bad_flags_fail_with_a_clear_message(outcomes, index):
    result = outcomes[f"bad{index}"]
    assert result["returncode"] != 0
    assert BAD_FLAGS[index][1] in result["stderr"]
    assert "Traceback" not in result["stderr"]
    # nothing was started: no experiment folder in the case's own --logdir
    assert not list((outcomes["root"] / f"bad{index}").glob("cls_*"))


def test_missing_data_folder_names_the_flag(outcomes):
    result = outcomes["missing_data"]
    assert result["returncode"] == 2
    assert "--omniglot_folder" in result["stderr"] and "prepare_omniglot" in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_testing_without_a_checkpoint_is_a_clear_error(outcomes):
    result = outcomes["no_checkpoint"]
    assert result["returncode"] == 2
    assert "no checkpoint to test" in result["stderr"] and "Traceback" not in result["stderr"]
