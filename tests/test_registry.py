"""The registry of presets (flags/experiments.py), the run record (config.json) and restore
verification: cheap checks (no training beyond a few sinusoid iterations)."""
import dataclasses
import os
import shlex
import subprocess
import sys

import pytest

from data_generators.factory import build_task_sources
from flags import experiments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What run.sh passed before the registry (its lines, LOGROOT=L, default data folders).
OLD_LINES = {
    ("sinusoid", ()): "--datasource=sinusoid --norm=None --update_batch_size=10 "
    "--metatrain_iterations=70000 --update_lr=0.01 --logdir=L/sine/",
    ("sinusoid_lr0.001_test", ("--update_batch_size=5",)): "--datasource=sinusoid --norm=None "
    "--update_batch_size=10 --metatrain_iterations=70000 --logdir=L/sine_lr0.001/ "
    "--train=False --update_batch_size=5 --train_update_batch_size=10",
    ("sinusoid_pretrained_test", ("--update_batch_size=5",)): "--datasource=sinusoid "
    "--norm=None --update_batch_size=10 --pretrain_iterations=70000 --metatrain_iterations=0 "
    "--update_lr=0.01 --logdir=L/sine_pretrained/ --train=False --update_batch_size=5 "
    "--train_update_batch_size=10 --train_update_lr=0.01 --update_lr=0.01",
    ("sinusoid_pretrained_test", ("--update_batch_size=20", "--update_lr=0.003")):
    "--datasource=sinusoid --norm=None --update_batch_size=10 --pretrain_iterations=70000 "
    "--metatrain_iterations=0 --update_lr=0.01 --logdir=L/sine_pretrained/ --train=False "
    "--update_batch_size=20 --train_update_batch_size=10 --train_update_lr=0.01 "
    "--update_lr=0.02 --update_lr=0.003",
    ("sinusoid_oracle_test", ()): "--datasource=sinusoid --norm=None --update_batch_size=10 "
    "--pretrain_iterations=70000 --metatrain_iterations=0 --update_lr=0.01 --baseline=oracle "
    "--logdir=L/sine_oracle/ --train=False --update_batch_size=10 --train_update_batch_size=10",
    ("omniglot_20way_5shot_test", ()): "--datasource=omniglot "
    "--omniglot_folder=./data/omniglot_resized --metatrain_iterations=60000 "
    "--meta_batch_size=16 --update_batch_size=5 --num_classes=20 --update_lr=0.1 "
    "--num_updates=5 --logdir=L/omniglot20way/ --train=False --test_set=True",
    ("omniglot_noconv_5way_1shot", ()): "--datasource=omniglot "
    "--omniglot_folder=./data/omniglot_resized --metatrain_iterations=60000 "
    "--meta_batch_size=32 --update_batch_size=1 --update_lr=0.4 --num_updates=1 --conv=False "
    "--logdir=L/omniglot5way_noconv/",
    ("miniimagenet_1shot_fo", ()): "--datasource=miniimagenet "
    "--miniimagenet_folder=./data/miniImagenet --metatrain_iterations=60000 --update_lr=0.01 "
    "--num_updates=5 --num_classes=5 --num_filters=32 --max_pool=True --meta_batch_size=4 "
    "--update_batch_size=1 --stop_grad=True --logdir=L/miniimagenet1shot/",
    ("miniimagenet_1shot_authors_test", ()): "--datasource=miniimagenet "
    "--miniimagenet_folder=./data/miniImagenet --metatrain_iterations=60000 --update_lr=0.01 "
    "--num_updates=5 --num_classes=5 --num_filters=32 --max_pool=True --meta_batch_size=4 "
    "--update_batch_size=1 --logdir=L/miniimagenet1shot_authors/ --train=False --test_set=True",
    ("rl_cheetah_dir", ()): "--env_name=cheetah_dir --seed=1 --mode=train --resume=True "
    "--n_itr=500 --fd_base_eps=1.0 --step_size=0.02 --logdir=L/rl/cheetah_dir_maml",
    ("rl_cheetah_vel", ()): "--env_name=cheetah_vel --seed=1 --mode=train --resume=True "
    "--n_itr=500 --fd_base_eps=1.0 --fast_batch_size=10 --logdir=L/rl/cheetah_vel_maml",
    ("rl_point", ()): "--env_name=point --seed=1 --mode=train --resume=True --n_itr=500 "
    "--logdir=L/rl/point_maml",
    # the baselines as the released scripts trained them (issue 15), and the former TRPO
    # pretrained baseline under its own name and folder
    ("rl_ant_dir_oracle", ()): "--env_name=ant_dir --seed=1 --mode=train --resume=True "
    "--n_itr=2000 --fd_base_eps=1.0 --meta_batch_size=100 --fast_batch_size=1 "
    "--sampling=per_task --sampling_lanes=1 --advantage_scope=batch --use_maml=False "
    "--oracle=True --logdir=L/rl/ant_dir_oracle",
    ("rl_point_pretrained", ()): "--env_name=point --seed=1 --mode=train --resume=True "
    "--n_itr=100 --pretrain_optimizer=adam --use_maml=False --logdir=L/rl/point_pretrained",
    ("rl_cheetah_dir_pretrained_multitask", ()): "--env_name=cheetah_dir --seed=1 "
    "--mode=train --resume=True --n_itr=500 --fd_base_eps=1.0 --use_maml=False "
    "--logdir=L/rl/cheetah_dir_pretrained_multitask",
    ("rl_cheetah_vel_pretrained_test", ()): "--env_name=cheetah_vel --seed=1 --mode=test "
    "--use_maml=False --logdir=L/rl/cheetah_vel_pretrained",
    ("rl_point_random", ()): "--env_name=point --seed=1 --mode=test --test_init=random "
    "--logdir=L/rl/point_random",
}


def _final(args):
    """Flag -> value as absl resolves a command line (the last value wins)."""
    values = {}
    for arg in args:
        name, _, value = arg[2:].partition("=")
        values[name] = value
    return values


@pytest.mark.parametrize("name, extra", list(OLD_LINES))
def test_preset_plus_overrides_gives_the_old_run_sh_flags(name, extra):
    expanded = experiments.preset_args(name, extra, logroot="L") + list(extra)
    assert _final(expanded) == _final(shlex.split(OLD_LINES[(name, extra)]))


def test_every_old_run_sh_name_is_a_preset():
    names = set(experiments.names())
    for base in ("omniglot_5way_1shot", "omniglot_5way_5shot", "omniglot_20way_1shot",
                 "omniglot_20way_5shot", "omniglot_noconv_5way_1shot",
                 "omniglot_noconv_5way_5shot", "miniimagenet_1shot", "miniimagenet_5shot",
                 "miniimagenet_1shot_fo", "miniimagenet_5shot_fo", "miniimagenet_1shot_authors",
                 "sinusoid", "sinusoid_lr0.001", "sinusoid_pretrained", "sinusoid_oracle"):
        assert {base, base + "_test"} <= names
    for env in experiments.RL_ENVS:
        for suffix in ("", "_pretrained", "_oracle", "_test", "_pretrained_test",
                       "_oracle_test", "_random"):
            assert f"rl_{env}{suffix}" in names


def test_unknown_and_misplaced_names_are_clear_errors():
    with pytest.raises(experiments.UnknownExperiment, match="'omniglot_5way'; known: "
                       "sinusoid, sinusoid_test"):
        experiments.lookup("omniglot_5way")
    with pytest.raises(ValueError, match="rl_point is run by python -m rl.main"):
        experiments.expand_argv(["main.py", "--experiment=rl_point"], ("supervised",))
    with pytest.raises(experiments.UnknownExperiment):
        experiments.lookup("rl_point_test_test")


def test_run_sh_list_is_the_registry():
    listed = subprocess.run([os.path.join(ROOT, "run.sh"), "list"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    registry = experiments.listing().splitlines()
    assert lines[:len(registry)] == registry
    assert [line.split()[0] for line in registry] == experiments.names()
    assert "Table 1" in next(line for line in registry if line.startswith("miniimagenet_1shot "))
    # run.sh's own commands follow the presets
    assert {line.split()[0] for line in lines[len(registry):]} == {"sinusoid_experiment",
                                                                   "rl_ENV_compare"}


# ---- the run record and restore verification -------------------------------------------------
def _tiny_run(tmp_path):
    from maml_tf import experiment
    from maml_tf.config import ExperimentConfig
    cfg = ExperimentConfig(norm="None", update_batch_size=3, update_lr=0.01,
                           metatrain_iterations=2, meta_batch_size=2, logdir=str(tmp_path),
                           checkpoint_interval=1, xla="off")
    experiment.run(cfg, build_task_sources, log=lambda *_: None, preset="sinusoid")
    return cfg


def test_config_json_is_written_and_test_mode_needs_only_the_logdir(tmp_path):
    import json

    from maml_tf import experiment, run_folder
    from maml_tf.config import ExperimentConfig
    from maml_tf.run_record import resolve_for_test
    trained = _tiny_run(tmp_path)
    with open(os.path.join(trained.experiment_dir, "config.json")) as handle:
        record = json.load(handle)
    assert record["experiment"] == "sinusoid" and record["code_version"]
    assert record["config"]["update_batch_size"] == 3 and record["config"]["norm"] == "None"
    assert record["resume_settings"]["metatrain_iterations"] == 2
    # test with --logdir alone (the flag defaults elsewhere): the model comes from the record
    lines = []
    flags = dict(logdir=str(tmp_path), train=False, num_test_tasks=4)
    cfg = resolve_for_test(ExperimentConfig(**flags), set(flags), lines.append)
    assert cfg.experiment_dir == trained.experiment_dir
    assert (cfg.norm, cfg.update_batch_size, cfg.update_lr, cfg.meta_batch_size) == \
        ("None", 3, 0.01, 2)
    assert any("config.json" in line and "norm=None" in line for line in lines)
    result = experiment.run(cfg, build_task_sources, log=lambda *_: None)
    assert result["csv"].endswith("test_ubs3_stepsize0.01.csv")
    assert result["values"].shape == (4, 11)
    # test-time K and step size stay free; the directory is still the recorded run's
    flags = dict(flags, update_batch_size=7, update_lr=0.02)
    free = resolve_for_test(ExperimentConfig(**flags), set(flags))
    assert (free.update_batch_size, free.update_lr, free.train_update_batch_size) == (7, 0.02, 3)
    assert free.experiment_dir == trained.experiment_dir
    # a flag that changes the model and contradicts the record names both values
    flags = dict(logdir=str(tmp_path), train=False, norm="batch_norm")
    with pytest.raises(run_folder.RunFolderError,
                       match="--norm=batch_norm but the run was trained with --norm=None"):
        resolve_for_test(ExperimentConfig(**flags), set(flags))


def test_old_runs_without_a_record_are_tested_from_the_flags(tmp_path):
    from maml_tf.config import ExperimentConfig
    from maml_tf.run_record import resolve_for_test
    trained = _tiny_run(tmp_path)
    os.remove(os.path.join(trained.experiment_dir, "config.json"))
    lines = []
    flags = dict(norm="None", update_batch_size=3, update_lr=0.01, meta_batch_size=2,
                 logdir=str(tmp_path), train=False)
    cfg = resolve_for_test(ExperimentConfig(**flags), set(flags), lines.append)
    assert cfg.experiment_dir == trained.experiment_dir
    assert lines == [f"No config.json in {trained.experiment_dir} (a run from before run "
                     f"records): the flags define the model, as before"]


def test_partial_checkpoints_fail_naming_the_unmatched_variables(tmp_path):
    import tensorflow as tf

    from maml_tf.checkpoint import CheckpointError, IterationCheckpointer
    from maml_tf.models import FullyConnectedNet
    tf.keras.utils.set_random_seed(0)
    saved = IterationCheckpointer(str(tmp_path / "a"), model=FullyConnectedNet(1, 1, (8, 8),
                                                                              norm="None"))
    saved.save(4)
    smaller = IterationCheckpointer(str(tmp_path / "a"), model=FullyConnectedNet(1, 1, (8,),
                                                                                norm="None"))
    with pytest.raises(CheckpointError, match=r"ckpt-4 does not match .*in the checkpoint but "
                       r"not in the model: model/b3, model/w3"):
        smaller.restore()
    IterationCheckpointer(str(tmp_path / "b")).save(7)   # only the iteration counter
    empty = IterationCheckpointer(str(tmp_path / "b"), model=FullyConnectedNet(1, 1, (8,),
                                                                              norm="None"))
    with pytest.raises(CheckpointError, match=r"b/ckpt-7 .*not in the checkpoint: model/b1"):
        empty.restore()
    assert saved.restore() == 4   # the same model matches


def test_experiment_flag_expands_for_main_py():
    """main.py's parser puts the preset first: an explicit flag wins, --logroot moves it."""
    code = ("import sys; from absl import flags as f; import flags.supervised as s; "
            "from flags import common; "
            "common.parse_with_experiment(('supervised',))(sys.argv); F = f.FLAGS; "
            "print(F.datasource, F.num_classes, F.update_lr, F.logdir, F.meta_batch_size)")
    done = subprocess.run([sys.executable, "-c", code, "--experiment=omniglot_20way_1shot",
                           "--logroot=/tmp/x", "--meta_batch_size=8"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["omniglot", "20", "0.1", "/tmp/x/omniglot20way/", "8"]


def test_presets_build_valid_configurations():
    from maml_tf.config import ExperimentConfig, experiment_name
    names = {}
    for preset in experiments.EXPERIMENTS.values():
        if preset.kind == "rl":
            continue
        cfg = ExperimentConfig(**preset.flags)
        names[preset.name] = experiment_name(cfg)
        assert dataclasses.asdict(cfg)
    # the experiment folder names of the runs under checkpoints/ must not change
    assert names["miniimagenet_1shot_fo"] == \
        "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolstopgradbatchnorm"
    assert names["sinusoid_lr0.001"] == "cls_5.mbs_25.ubs_10.numstep1.updatelr0.001nonorm"
    assert names["omniglot_5way_1shot"] == "cls_5.mbs_32.ubs_1.numstep1.updatelr0.4batchnorm"


# ---- RL result files: one name, every test preset compared ---------------------------------
def test_rl_test_presets_name_the_method_rl_main_tests():
    """The file a test preset's run writes is named by rl/main.py's method (random init,
    oracle, no inner step, else maml): the registry's ``method`` must be that one."""
    for env in experiments.RL_ENVS:
        presets = experiments.rl_test_presets(env)
        assert {p.name for p in presets} >= {f"rl_{env}_test", f"rl_{env}_random",
                                             f"rl_{env}_pretrained_multitask_test"}
        for preset in presets:
            flags = preset.flags
            derived = ("random" if flags.get("test_init") == "random" else
                       "oracle" if flags.get("oracle") else
                       "pretrained" if flags.get("use_maml") is False else "maml")
            assert preset.method == derived, preset.name


def test_rl_results_lists_the_files_of_every_test_preset_that_exist(tmp_path):
    root = str(tmp_path)
    assert experiments.rl_results("point", root) == []
    for name in ("rl_point_oracle_test", "rl_point_pretrained_multitask_test",
                 "rl_point_test", "rl_cheetah_dir_random"):
        preset = experiments.EXPERIMENTS[name]
        path = experiments.rl_result_file(preset.logdir(root), preset.method)
        os.makedirs(os.path.dirname(path))
        open(path, "w").close()
    expected = [os.path.join(root, "rl", folder, name) for folder, name in (
        ("point_maml", "test_maml.pkl"), ("point_pretrained_multitask", "test_pretrained.pkl"),
        ("point_oracle", "test_oracle.pkl"))]
    assert experiments.rl_results("point", root) == expected
    listed = subprocess.run([sys.executable, "-m", "flags.experiments", "results", "point",
                             f"--logroot={root}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and listed.stdout.splitlines() == expected
    unknown = subprocess.run([sys.executable, "-m", "flags.experiments", "results", "moon"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "point" in unknown.stderr
