"""One supervised run, from a plain ExperimentConfig: build, restore, train or test, export.

This is the original ``main()`` without the flag parsing, so scripts and tests can run an
experiment without absl.
"""
from __future__ import annotations

import os

import keras

from data_generators.factory import TaskSources, build_task_sources
from maml_tf import evaluation, trainer
from maml_tf.checkpoint import CheckpointError, IterationCheckpointer
from maml_tf.config import ExperimentConfig, experiment_name
from maml_tf.export import export_saved_model
from maml_tf.learner import MetaLearner
from maml_tf.maml import InnerLoopSpec
from maml_tf.models import ConvNet, FullyConnectedNet, MetaModel

NO_CONV_HIDDEN = (256, 128, 64, 64)
SINUSOID_HIDDEN = (40, 40)


def build_model(cfg: ExperimentConfig, sources: TaskSources) -> MetaModel:
    """The original's architecture choice for the datasource and flags."""
    if cfg.datasource == "sinusoid":
        return FullyConnectedNet(sources.dim_input, sources.dim_output, SINUSOID_HIDDEN,
                                 norm=cfg.norm)
    if not cfg.conv:
        return FullyConnectedNet(sources.dim_input, sources.dim_output, NO_CONV_HIDDEN,
                                 norm=cfg.norm)
    return ConvNet(sources.dim_output, img_size=sources.img_size, channels=sources.channels,
                   num_filters=cfg.num_filters, max_pool=cfg.max_pool,
                   flatten_head=cfg.datasource == "miniimagenet", norm=cfg.norm)


def inner_loop_spec(cfg: ExperimentConfig) -> InnerLoopSpec:
    return InnerLoopSpec(update_lr=cfg.update_lr, num_updates=cfg.num_updates,
                         classification=cfg.classification,
                         update_batch_size=cfg.update_batch_size, first_order=cfg.stop_grad)


def build_learner(cfg: ExperimentConfig, sources: TaskSources) -> MetaLearner:
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg, sources)
    return MetaLearner(model, inner_loop_spec(cfg), meta_lr=cfg.meta_lr,
                       clip_value=cfg.clip_meta_gradients, jit_compile=cfg.use_xla)


def restore(cfg: ExperimentConfig, checkpointer: IterationCheckpointer, log=print) -> int:
    """The original's restore logic; returns the first iteration still to run.

    Training restores the latest checkpoint when ``--resume`` (or ``--test_iter`` if > 0);
    testing always restores and fails clearly when there is nothing to restore.
    """
    if not (cfg.resume or not cfg.train):
        return 0
    iteration = cfg.test_iter if cfg.test_iter > 0 else -1
    restored = checkpointer.restore(iteration)
    if restored is None:
        if not cfg.train:
            raise CheckpointError(
                f"no checkpoint to test in {cfg.experiment_dir}: train first with the same "
                f"flags (the directory name encodes them), or pass --logdir / "
                f"--train_update_batch_size / --train_update_lr to point at the trained model")
        return 0
    log(f"Restoring model weights from {checkpointer.directory}/ckpt-{restored}")
    return restored + 1


def run(cfg: ExperimentConfig, log=print) -> dict:
    """Runs the experiment; returns paths and values a caller (or test) may want."""
    log(f"Experiment: {experiment_name(cfg)}  (in {cfg.logdir})")
    sources = build_task_sources(cfg)
    learner = build_learner(cfg, sources)
    os.makedirs(cfg.experiment_dir, exist_ok=True)
    checkpointer = IterationCheckpointer(cfg.experiment_dir, model=learner.model,
                                         optimizer=learner.optimizer)
    resume_itr = restore(cfg, checkpointer, log)
    result = {"experiment_dir": cfg.experiment_dir, "resume_itr": resume_itr}
    if cfg.train:
        sources.resume(resume_itr)
        result["last_itr"] = trainer.train(
            cfg, learner, trainer.TrainingSources(sources.train, sources.val), checkpointer,
            resume_itr, log)
    else:
        values = evaluation.evaluate_tasks(
            learner, sources.test, cfg.num_test_tasks, cfg.eval_num_updates,
            cfg.classification, cfg.test_batch_size)
        result["values"] = values
        result["csv"], result["pkl"] = evaluation.write_results(
            values, cfg.experiment_dir, cfg.update_batch_size, cfg.update_lr, log,
            iteration=resume_itr - 1)
    if cfg.export_dir:
        steps = cfg.export_num_updates if cfg.export_num_updates > 0 else cfg.num_updates
        export_saved_model(learner.model, inner_loop_spec(cfg), steps, cfg.export_dir)
        log(f"Exported SavedModel ({steps} inner steps, update_lr {cfg.update_lr}) to "
            f"{cfg.export_dir}")
        result["export_dir"] = cfg.export_dir
    return result
