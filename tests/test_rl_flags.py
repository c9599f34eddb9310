"""Bad flags and unknown environments fail fast with one clear line, no traceback."""
import os

import pytest

from tests.entry_driver import run_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every case runs through rl.main's own entry, all in one process (tests/entry_driver.py);
# "resolve" cases return the test configuration the flags resolve to.
_RESOLVE = """
def resolve(args):
    main.FLAGS.unparse_flags()
    main.FLAGS(["rl.main", *args])
    config = dataclasses.asdict(main.eval_config())
    config["nonlinearity"] = main.train_config().policy.nonlinearity
    return config

"""

BAD_FLAGS = [
    (["--env_name=cheetah"], "unknown environment 'cheetah'"),
    (["--task=antt"], "unknown environment 'antt'"),
    (["--meta_batch_size=0"], "--meta_batch_size must be a positive integer"),
    (["--fast_lr=-0.1"], "--fast_lr must be > 0"),
    (["--hvp=perlmutter"], "hvp"),
    (["--hidden_sizes=100,abc"], "--hidden_sizes must be a comma-separated list"),
    (["--test_checkpoint=newest"], "--test_checkpoint must be"),
    (["--discount=1.5"], "--discount must be in (0, 1]"),
    (["--mode=export"], "--mode=export needs --export_dir"),
    (["--advantage_scope=batch"], "--advantage_scope=batch pools the tasks' paths"),
    # --distribute (rl/distribute.py): refused before anything is built or sampled
    (["--distribute=mirrored", "--num_cpu_devices=2", "--meta_batch_size=3"],
     "--meta_batch_size=3 is not divisible by --num_cpu_devices=2"),
    (["--distribute=mirrored", "--num_cpu_devices=3", "--env_name=cheetah_vel"],
     "--meta_batch_size=40 is not divisible by --num_cpu_devices=3"),   # the task's default
    (["--distribute=multi_worker"], "--distribute=multi_worker is not supported for RL"),
    (["--num_cpu_devices=2"], "--num_cpu_devices=2 needs --distribute=mirrored"),
    (["--env_name=cheetah_dir", "--backward_fraction=1"], "--backward_fraction must be in (0, 1)"),
    (["--env_name=cheetah_vel", "--backward_fraction=0.2"],
     "--backward_fraction=0.2: only the forward/backward tasks"),
    (["--test_backward_fraction=0.4"], "not --env_name=point"),
]

PROTOCOL = [
    (["--env_name=point", "--mode=test", "--test_init=random"],
     dict(method="random", fast_lr=0.5, lr_decay=0.5, goal_seed=1, episodes_per_task=40,
          nonlinearity="tanh")),
    (["--env_name=point", "--mode=test"],
     dict(method="maml", nonlinearity="relu", sampling="per_task", sampling_lanes=4)),
    (["--env_name=point", "--mode=test", "--test_sampling=fixed"], dict(sampling="fixed")),
    (["--env_name=cheetah_dir", "--mode=test"],
     dict(method="maml", fast_lr=0.1, lr_decay=0.5, goal_seed=1, episodes_per_task=20)),
    (["--env_name=ant_dir", "--mode=test"], dict(backward_fraction=0.5, goal_seed=2)),
    (["--env_name=ant_dir", "--mode=test", "--test_backward_fraction=0.428571"],
     dict(backward_fraction=0.428571)),
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
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case's outcome, computed in one process."""
    empty = tmp_path_factory.mktemp("no_checkpoint")
    cases = {f"bad{i}": ("run", args) for i, (args, _) in enumerate(BAD_FLAGS)}
    cases["missing"] = ("run", ["--mode=test", f"--logdir={empty}", "--test_num_episodes=2"])
    cases.update({f"protocol{i}": ("resolve", args) for i, (args, _) in enumerate(PROTOCOL)})
    return run_cases("rl", cases, ROOT, extra_source=_RESOLVE)


@pytest.mark.parametrize("index", range(len(BAD_FLAGS)))
def test_bad_flags_fail_before_any_work(outcomes, index):
    message = BAD_FLAGS[index][1]
    result = outcomes[f"bad{index}"]
    assert result["returncode"] != 0
    assert message in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_missing_checkpoint_is_a_usage_error(outcomes):
    result = outcomes["missing"]
    assert result["returncode"] != 0
    assert "no checkpoint in" in result["stderr"]
    assert "Traceback" not in result["stderr"]


@pytest.mark.parametrize("index", range(len(PROTOCOL)))
def test_test_protocol_defaults_follow_the_released_test_scripts(outcomes, index):
    """maml_rl's test_maml_*.py step sizes, batch sizes, goal seeds and (point random
    baseline) nonlinearity per task and method; an explicit flag wins."""
    expected = PROTOCOL[index][1]
    config = outcomes[f"protocol{index}"]
    assert {key: config[key] for key in expected} == expected
