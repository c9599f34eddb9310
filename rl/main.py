"""MAML-TRPO entry point (section 5.3): ``python -m rl.main``.

    # meta-train on the point robot, then run the test protocol on the best iteration
    python -m rl.main --env_name=point --n_itr=100 --logdir=logs/rl/point_maml \
        --mode=train_and_test
    # baselines: pretrained (no inner step), oracle (goal in the observation), random init
    python -m rl.main --env_name=point --use_maml=False --logdir=logs/rl/point_pretrained ...
    python -m rl.main --env_name=point --oracle --use_maml=False --logdir=logs/rl/point_oracle
    python -m rl.main --env_name=point --mode=test --test_init=random --logdir=logs/rl/point_random
    # the best iteration's policy as a SavedModel (act, adapt_and_act)
    python -m rl.main --env_name=point --mode=export --logdir=logs/rl/point_maml --export_dir=DIR

This is the only RL module that reads absl flags; it turns them into rl.config objects.
"""
from __future__ import annotations

import os

import maml_tf  # noqa: E402,F401  (oneDNN on, quiet logs: before TensorFlow loads)

from absl import app, logging  # noqa: E402

from flags import common  # noqa: E402
from flags import rl as rl_flags  # noqa: E402  (defines the flags)

FLAGS = rl_flags.FLAGS


def method_name() -> str:
    if FLAGS.method_name:
        return FLAGS.method_name
    if FLAGS.mode == "test" and FLAGS.test_init == "random":
        return "random"
    if FLAGS.oracle:
        return "oracle"
    return "maml" if FLAGS.use_maml else "pretrained"


def train_config():
    from rl.config import PolicyConfig, TrainConfig
    from rl.maml_trpo import TRPOConfig
    return TrainConfig(
        env_name=FLAGS.env_name, oracle=FLAGS.oracle,
        meta_batch_size=rl_flags.resolved("meta_batch_size"),
        fast_batch_size=rl_flags.resolved("fast_batch_size"),
        max_path_length=rl_flags.resolved("max_path_length"),
        n_itr=FLAGS.n_itr, discount=FLAGS.discount, gae_lambda=FLAGS.gae_lambda,
        seed=FLAGS.seed, logdir=FLAGS.logdir, resume=FLAGS.resume, overwrite=FLAGS.overwrite,
        checkpoint_every=FLAGS.checkpoint_every, checkpoint_minutes=FLAGS.checkpoint_minutes,
        num_workers=rl_flags.resolved("num_workers"),
        sampling=rl_flags.resolved("sampling"),
        sampling_lanes=rl_flags.resolved("sampling_lanes"), fixed_goals=FLAGS.fixed_goals,
        backward_fraction=FLAGS.backward_fraction,
        advantage_scope=FLAGS.advantage_scope,
        distribute=FLAGS.distribute, num_cpu_devices=FLAGS.num_cpu_devices,
        policy=PolicyConfig(tuple(int(s) for s in FLAGS.hidden_sizes), FLAGS.init_std,
                            FLAGS.dtype, rl_flags.resolved("hidden_nonlinearity")),
        trpo=TRPOConfig(
            fast_lr=rl_flags.resolved("fast_lr"), num_grad_updates=FLAGS.num_grad_updates,
            use_maml=FLAGS.use_maml, step_size=FLAGS.step_size, cg_iters=FLAGS.cg_iters,
            cg_damping=FLAGS.cg_damping, backtrack_ratio=FLAGS.backtrack_ratio,
            max_backtracks=FLAGS.max_backtracks, hvp=rl_flags.resolved("hvp"),
            fd_base_eps=FLAGS.fd_base_eps, pretrain_optimizer=FLAGS.pretrain_optimizer,
            pretrain_lr=FLAGS.pretrain_lr))


def eval_config():
    from rl.config import EvalConfig
    method = method_name()
    return EvalConfig(
        env_name=FLAGS.env_name, oracle=FLAGS.oracle, num_tasks=FLAGS.test_num_tasks,
        episodes_per_task=rl_flags.resolved("test_num_episodes"),
        max_path_length=rl_flags.resolved("max_path_length"), num_steps=FLAGS.test_num_steps,
        fast_lr=rl_flags.resolved("test_fast_lr", method),
        lr_decay=rl_flags.resolved("test_lr_decay"),
        goal_seed=rl_flags.resolved("test_goal_seed"),
        backward_fraction=FLAGS.test_backward_fraction, seed=FLAGS.seed,
        num_workers=rl_flags.resolved("num_workers"), method=method,
        sampling=rl_flags.resolved("test_sampling"),
        random_init=rl_flags.resolved("test_random_init"))


# Flags test and export take from the run's record when the command line leaves them out:
# flag -> key of the recorded settings. Those of MODEL_FLAGS define the policy or the method,
# and a contradicting flag is an error; fast_lr (the MAML test step) stays free.
RECORDED_FLAGS = {"env_name": "env_name", "oracle": "oracle", "use_maml": "use_maml",
                  "hidden_sizes": "hidden_sizes", "hidden_nonlinearity": "nonlinearity",
                  "dtype": "dtype", "init_std": "init_std", "fast_lr": "fast_lr"}
MODEL_FLAGS = ("env_name", "oracle", "use_maml", "hidden_sizes", "hidden_nonlinearity", "dtype")


def _flag_as_recorded(flag: str):
    """The flag's value in the form the record stores it."""
    from rl.envs.registry import get_spec
    value = rl_flags.resolved(flag) if flag in ("hidden_nonlinearity", "fast_lr") \
        else getattr(FLAGS, flag)
    if flag == "env_name":
        return get_spec(value).name
    if flag == "hidden_sizes":
        return [int(size) for size in value]
    return value


def apply_run_record() -> None:
    """--mode=test/export from a checkpoint: the settings the command line does not give come
    from ``<logdir>/config.json`` (or an older run's run_settings.json), so --logdir alone
    tests a run; a contradicting policy flag raises RunFolderError naming both values."""
    import json

    from maml_tf.run_folder import RECORD_NAME, SETTINGS_NAME, RunFolderError, read_record

    if FLAGS.mode not in ("test", "export") or FLAGS.test_init != "checkpoint":
        return
    record = read_record(FLAGS.logdir)
    source = os.path.join(FLAGS.logdir, RECORD_NAME)
    if record is not None:
        settings = record.get("resume_settings") or {}
    elif os.path.exists(os.path.join(FLAGS.logdir, SETTINGS_NAME)):
        source = os.path.join(FLAGS.logdir, SETTINGS_NAME)
        with open(source) as handle:
            settings = json.load(handle)
        logging.info("No %s in %s (a run from before config.json): reading %s", RECORD_NAME,
                     FLAGS.logdir, SETTINGS_NAME)
    else:
        logging.info("No %s in %s (a run from before run records): the flags define the "
                     "policy, as before", RECORD_NAME, FLAGS.logdir)
        return
    conflicts = [flag for flag in MODEL_FLAGS if FLAGS[flag].present
                 and RECORDED_FLAGS[flag] in settings
                 and _flag_as_recorded(flag) != settings[RECORDED_FLAGS[flag]]]
    if conflicts:
        raise RunFolderError("; ".join(
            f"--{flag}={_flag_as_recorded(flag)} but the run was trained with "
            f"--{flag}={settings[RECORDED_FLAGS[flag]]}" for flag in conflicts)
            + f" ({source}): these flags define the policy; leave them out to use the "
              f"recorded values")
    for flag, key in RECORDED_FLAGS.items():
        if not FLAGS[flag].present and key in settings:
            value = settings[key]
            FLAGS[flag].value = [str(v) for v in value] if flag == "hidden_sizes" else value


def restore_policy(train_cfg, oracle: bool):
    """The policy of --test_checkpoint in --logdir (or the random initialisation)."""
    from maml_tf.checkpoint import IterationCheckpointer
    from rl.envs.registry import make_env
    from rl.trainer import build_policy

    env = make_env(train_cfg.env_name, oracle)
    policy = build_policy(train_cfg.policy, env.observation_space.shape[0],
                          env.action_space.shape[0], FLAGS.seed)
    if FLAGS.test_init == "checkpoint":
        which = FLAGS.test_checkpoint
        subdir = "best" if which == "best" else "checkpoints"
        checkpointer = IterationCheckpointer(os.path.join(FLAGS.logdir, subdir), policy=policy)
        iteration = checkpointer.restore(-1 if which in ("best", "latest") else int(which),
                                         expect_partial=True, log=logging.warning)
        if iteration is None:
            raise app.UsageError(f"no checkpoint in {checkpointer.directory}; train first or "
                                 f"use --test_init=random")
        logging.info("restored the policy of iteration %d (%s)", iteration, which)
    return policy


def run_test(train_cfg) -> None:
    from rl.envs.registry import make_env
    from rl.evaluate import evaluate, per_goal_initialisations, save_results
    from rl.trainer import build_policy

    cfg = eval_config()
    policy = restore_policy(train_cfg, cfg.oracle)
    initial = None
    if FLAGS.test_init == "random" and cfg.random_init == "per_goal":
        space = make_env(train_cfg.env_name, cfg.oracle)
        dims = (space.observation_space.shape[0], space.action_space.shape[0])
        initial = per_goal_initialisations(
            lambda seed: build_policy(train_cfg.policy, *dims, seed), cfg.num_tasks)
    result = evaluate(policy, cfg, FLAGS.discount, FLAGS.gae_lambda, initial)
    from flags.experiments import rl_result_file   # the name rl_ENV_compare looks for
    path = FLAGS.test_results or rl_result_file(FLAGS.logdir, cfg.method)
    pickle_path, csv_path = save_results(result, path)
    means = " ".join(f"{m:.2f}" for m in result["mean_per_step"])
    print(f"{cfg.env_name} {cfg.method}: average return after 0..{cfg.num_steps} steps: "
          f"{means}  ({pickle_path}, {csv_path})")


def run_export(train_cfg) -> None:
    from rl.export import export_policy

    policy = restore_policy(train_cfg, train_cfg.oracle)
    path = export_policy(policy, FLAGS.export_dir, fast_lr=train_cfg.trpo.fast_lr)
    print(f"exported the {train_cfg.env_name} policy ({FLAGS.test_checkpoint}) to {path}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    # TensorFlow's checkpoint saver logs "Sharding callback duration" through absl at INFO on
    # every save (every iteration here); keep our INFO lines, drop that one.
    logging.get_absl_handler().addFilter(
        lambda record: not record.getMessage().startswith("Sharding callback duration"))
    if FLAGS.mode == "export" and not FLAGS.export_dir:
        raise app.UsageError("--mode=export needs --export_dir")
    from maml_tf.checkpoint import CheckpointError
    from maml_tf.distribute import DistributeError
    from maml_tf.export import ExportError
    from maml_tf.run_folder import RunFolderError
    from maml_tf.stopping import StopSignals, exit_status

    def body():
        apply_run_record()
        cfg = train_config()
        # SIGINT/SIGTERM (also for a run started in the background, whose SIGINT a shell
        # ignores) finish the current iteration, save, and exit with one line.
        with StopSignals() as stop:
            run(cfg, stop)
    return exit_status(body, (CheckpointError, RunFolderError, ExportError, DistributeError))


def run(cfg, stop) -> None:
    if FLAGS.mode in ("train", "train_and_test"):
        from rl.trainer import Trainer
        trainer = Trainer(cfg, stop, preset=FLAGS.experiment)
        try:
            trainer.train()
        finally:
            trainer.close()
    if FLAGS.mode in ("test", "train_and_test"):
        run_test(cfg)
    if FLAGS.export_dir:
        run_export(cfg)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_with_experiment(("rl",)))
