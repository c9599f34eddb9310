"""One supervised run, from a plain ExperimentConfig: build, restore, train or test, export.

This is the original ``main()`` without the flag parsing, so scripts and tests can run an
experiment without absl. Training holds the experiment directory's lock
(:mod:`maml_tf.run_folder`) from before anything is built until the end. The data comes from
the caller's ``make_sources`` (main.py: ``data_generators.factory.build_task_sources``), so
the engine sees batches of arrays and never a data set (:mod:`maml_tf.sources`).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from maml_tf import cluster, distribute, evaluation, run_folder, trainer
from maml_tf.checkpoint import DAMAGED_DIR, CheckpointError, IterationCheckpointer
from maml_tf.config import ExperimentConfig, experiment_name
from maml_tf.export import export_saved_model
from maml_tf.learner import MetaLearner
from maml_tf.maml import InnerLoopSpec
from maml_tf.conv_paths import fused_batch_norm_default
from maml_tf.models import ConvNet, FullyConnectedNet, MetaModel
from maml_tf.sources import MakeSources, ModelShape

NO_CONV_HIDDEN = (256, 128, 64, 64)
SINUSOID_HIDDEN = (40, 40)

# What a supervised run writes in its experiment directory: --overwrite removes these.
RUN_FILES = ("ckpt-*", "checkpoint", "events.out.tfevents*", DAMAGED_DIR,
             run_folder.RECORD_NAME, run_folder.SETTINGS_NAME, "test_ubs*")
# Settings not encoded in the directory name that define the model: refused if changed on
# resume (the restore would fail, or mix two models). The others are applied with a line.
FIXED_SETTINGS = {"datasource": "--datasource", "conv": "--conv"}


def run_settings(cfg: ExperimentConfig) -> dict:
    """The settings compared on resume, kept in config.json's ``resume_settings`` (Adam's learning rate is checked against
    the checkpoint itself, so older runs without the file are covered too)."""
    return {"datasource": cfg.datasource, "conv": cfg.conv if cfg.classification else None,
            "pretrain_iterations": cfg.pretrain_iterations,
            "metatrain_iterations": cfg.metatrain_iterations, "seed": cfg.seed,
            "checkpoint_interval": cfg.checkpoint_interval,
            "checkpoint_minutes": cfg.checkpoint_minutes}


def build_model(cfg: ExperimentConfig, sources: ModelShape) -> MetaModel:
    """The original's architecture choice for the datasource and flags."""
    if cfg.datasource == "sinusoid":
        return FullyConnectedNet(sources.dim_input, sources.dim_output, SINUSOID_HIDDEN,
                                 norm=cfg.norm, factored_inner_step=cfg.factored_inner_step)
    if not cfg.conv:
        return FullyConnectedNet(sources.dim_input, sources.dim_output, NO_CONV_HIDDEN,
                                 norm=cfg.norm, factored_inner_step=cfg.factored_inner_step)
    return ConvNet(sources.dim_output, img_size=sources.img_size, channels=sources.channels,
                   num_filters=cfg.num_filters, max_pool=cfg.max_pool,
                   flatten_head=cfg.datasource == "miniimagenet", norm=cfg.norm,
                   fused_batch_norm=fused_batch_norm_default(cfg.max_pool, cfg.stop_grad))


def inner_loop_spec(cfg: ExperimentConfig) -> InnerLoopSpec:
    return InnerLoopSpec(update_lr=cfg.update_lr, num_updates=cfg.num_updates,
                         classification=cfg.classification,
                         update_batch_size=cfg.update_batch_size, first_order=cfg.stop_grad)


def build_learner(cfg: ExperimentConfig, sources: ModelShape,
                  strategy=None) -> MetaLearner:
    """The learner; with a ``strategy`` its weights and Adam's slots are mirrored variables
    (created in the strategy's scope, from the same seed, so the initial weights are the
    single-device run's)."""
    keras.utils.set_random_seed(cfg.seed)
    if strategy is None:
        model = build_model(cfg, sources)
        return MetaLearner(model, inner_loop_spec(cfg), meta_lr=cfg.meta_lr,
                           clip_value=cfg.clip_meta_gradients, jit_compile=cfg.use_xla,
                           task_groups=cfg.task_group_count)
    with strategy.scope():
        model = build_model(cfg, sources)
        return distribute.MirroredMetaLearner(
            model, inner_loop_spec(cfg), strategy, meta_lr=cfg.meta_lr,
            clip_value=cfg.clip_meta_gradients, jit_compile=cfg.use_xla)


def build_strategy(cfg: ExperimentConfig, log=print):
    """The strategy (None for one device), made before anything else of a run: logical CPU
    devices can only be configured before TensorFlow's first operation, and a meta-batch
    that does not split (or a cluster that cannot be reached) must fail before any data is
    read. Test mode splits its tasks too (any number; padded), so only training checks."""
    if cfg.distribute == "none":
        return None
    strategy = distribute.build_strategy(cfg.distribute, cfg.num_cpu_devices,
                                         cfg.worker_timeout)
    replicas = strategy.num_replicas_in_sync
    if cfg.train:
        distribute.check_meta_batch(cfg.meta_batch_size, replicas, cfg.distribute)
        log(f"--distribute={cfg.distribute}: {replicas} replicas, "
            f"{cfg.meta_batch_size // replicas} tasks each")
    else:
        log(f"--distribute={cfg.distribute}: {replicas} replicas share the test tasks")
    return strategy


def restore(cfg: ExperimentConfig, checkpointer: IterationCheckpointer, log=print,
            learner: MetaLearner | None = None, owner: bool = False) -> int:
    """The original's restore logic; returns the first iteration still to run.

    Training restores the newest intact checkpoint when ``--resume`` (or ``--test_iter`` if
    > 0); testing always restores and fails clearly when there is nothing to restore or the
    weights are not finite. ``owner`` (the lock holder) sets damaged checkpoints aside. With
    a ``learner``, training sets Adam's restored learning rate to ``--meta_lr``, with a line
    when it changes.
    """
    if not (cfg.resume or not cfg.train):
        return 0
    iteration = cfg.test_iter if cfg.test_iter > 0 else -1
    restored = checkpointer.restore(iteration, log=log, set_aside_damaged=owner)
    if restored is None:
        if not cfg.train:
            raise CheckpointError(
                f"no checkpoint to test in {cfg.experiment_dir}: train first with the same "
                f"flags (the directory name encodes them), or pass --logdir / "
                f"--train_update_batch_size / --train_update_lr to point at the trained model")
        return 0
    log(f"Restoring model weights from {checkpointer.directory}/ckpt-{restored}")
    if learner is not None and not learner.weights_finite():
        raise CheckpointError(f"checkpoint {checkpointer.path(restored)} holds non-finite "
                              f"weights; it cannot be tested or trained on")
    if learner is not None and cfg.train:
        previous = learner.set_meta_lr(cfg.meta_lr)
        if abs(previous - cfg.meta_lr) > 1e-6 * max(abs(previous), abs(cfg.meta_lr)):
            log(f"Resume: Adam's learning rate was {previous:g} in ckpt-{restored}; set to "
                f"{cfg.meta_lr:g} from --meta_lr")
    return restored + 1


def prepare_folder(cfg: ExperimentConfig, log=print, preset: str | None = None) -> None:
    """The lock holder's checks before anything is built: fresh start over an existing run
    (refused without --overwrite), --overwrite, leftovers of interrupted writes, settings;
    then the run's record, config.json (the resolved configuration and the ``preset`` name)."""
    directory = cfg.experiment_dir
    run_folder.check_fresh_start(directory, [directory], cfg.resume, cfg.overwrite)
    if cfg.overwrite:
        run_folder.clear_run(directory, RUN_FILES, log)
    run_folder.clean_leftovers(directory, log)
    resuming = cfg.resume and bool(run_folder.checkpoint_iterations(directory))
    run_folder.compare_settings(directory, run_settings(cfg), FIXED_SETTINGS, log,
                                compare=resuming, config=dataclasses.asdict(cfg),
                                experiment=preset)


def run(cfg: ExperimentConfig, make_sources: MakeSources, log=print, stop=None,
        preset: str | None = None) -> dict:
    """Runs the experiment; returns paths and values a caller (or test) may want.

    ``make_sources(cfg)`` gives the run's task sources; it is called only after the strategy
    is built (see :func:`build_strategy`) and, when training, after the run folder's lock and
    checks, so a bad split or a refused folder fails before any data is read.
    ``stop`` is an installed :class:`maml_tf.stopping.StopSignals` (main.py's), or None;
    ``preset`` the --experiment name, recorded in config.json. Under ``multi_worker`` only
    the chief writes the run folder and prints; the other workers compute their shares and
    print one line.
    """
    log(f"Experiment: {experiment_name(cfg)}  (in {cfg.logdir})")
    strategy = build_strategy(cfg, log)
    if not distribute.is_chief(strategy):
        log("This worker computes its share; the chief writes the run folder and prints the "
            "progress")
        with cluster.lost_contact(strategy):
            return _run(cfg, make_sources, lambda *_: None, stop, owner=False,
                        strategy=strategy, chief=False)
    with cluster.lost_contact(strategy):
        if not cfg.train:
            return _run(cfg, make_sources, log, stop, owner=False, strategy=strategy)
        with run_folder.RunLock(cfg.experiment_dir, log):
            prepare_folder(cfg, log, preset)
            return _run(cfg, make_sources, log, stop, owner=True, strategy=strategy)


def _restore_everywhere(cfg, checkpointer, log, learner, owner, strategy, chief) -> int:
    """:func:`restore` on the chief; under ``multi_worker`` its result is then broadcast
    (:func:`maml_tf.cluster.sync_from_chief`), also a failure, so no worker waits for it."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return restore(cfg, checkpointer, log, learner=learner, owner=owner)
    variables = learner.model.variables + learner.optimizer.variables
    if not chief:
        return cluster.sync_from_chief(strategy, variables, 0)
    try:
        resume_itr = restore(cfg, checkpointer, log, learner=learner, owner=owner)
    except BaseException:
        _tell_failure(strategy, variables)
        raise
    return cluster.sync_from_chief(strategy, variables, resume_itr)


def _tell_failure(strategy, variables) -> None:
    try:
        cluster.sync_from_chief(strategy, variables, -1)
    except distribute.DistributeError:
        pass   # the chief's own copy of the failure: its real error follows


def _run(cfg: ExperimentConfig, make_sources: MakeSources, log, stop, owner: bool,
         strategy=None, chief: bool = True) -> dict:
    sources = make_sources(cfg)
    learner = build_learner(cfg, sources, strategy)
    checkpointer = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                         optimizer=learner.optimizer)
    resume_itr = _restore_everywhere(cfg, checkpointer, log, learner, owner, strategy, chief)
    result = {"experiment_dir": cfg.experiment_dir, "resume_itr": resume_itr}
    if cfg.train:
        if chief:  # TensorBoard points of iterations after the restored checkpoint are redone
            run_folder.truncate_events(cfg.experiment_dir, resume_itr)
        sources.resume(resume_itr)
        result["last_itr"] = trainer.train(
            cfg, learner, trainer.TrainingSources(sources.train, sources.val),
            checkpointer if chief else None, resume_itr, log, stop)
    else:
        values = evaluation.evaluate_tasks(
            learner, sources.test, cfg.num_test_tasks, cfg.eval_num_updates,
            cfg.classification, cfg.test_batch_size)
        result["values"] = values
        if chief:
            result["csv"], result["pkl"] = evaluation.write_results(
                values, cfg.experiment_dir, cfg.update_batch_size, cfg.update_lr, log,
                iteration=resume_itr - 1, test_seed=cfg.test_seed)
    if not chief:
        return result
    if cfg.export_dir:
        steps = cfg.export_num_updates if cfg.export_num_updates > 0 else cfg.num_updates
        export_saved_model(learner.model, inner_loop_spec(cfg), steps, cfg.export_dir)
        log(f"Exported SavedModel ({steps} inner steps, update_lr {cfg.update_lr}) to "
            f"{cfg.export_dir}")
        result["export_dir"] = cfg.export_dir
    return result
