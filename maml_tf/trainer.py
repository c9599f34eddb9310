"""The training loop of the original ``train()``: same intervals, printed lines and summaries.

- every 100 iterations: TensorBoard scalars ``metatrain_Pre-update loss``,
  ``metatrain_Post-update loss, step j`` (and accuracies for classification) for
  j = 1..max(test_num_updates, num_updates), computed on the training batch before the update;
- every 1000 (sinusoid) / 100 (classification) iterations: ``Iteration i: pre, post`` with
  the means of the values collected since the last print (accuracies for classification,
  as the original), followed by a progress line of this project (rate, time left);
- every 500 iterations for classification: ``Validation results: pre, post`` on a
  meta-validation batch (also written as ``metaval_*`` summaries);
- a checkpoint every 1000 iterations and at the end; an interrupted run (Ctrl-C) saves too.

Checkpoint ``ckpt-i`` holds the weights after iteration ``i``; resuming continues at i + 1.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from maml_tf.checkpoint import IterationCheckpointer
from maml_tf.config import ExperimentConfig

SUMMARY_INTERVAL = 100
SAVE_INTERVAL = 1000


@dataclasses.dataclass
class TrainingSources:
    """Where batches come from: callables returning TaskBatch-like tuples."""

    train: Callable[[], tuple]
    val: Optional[Callable[[], tuple]] = None


def print_interval(cfg: ExperimentConfig) -> int:
    return 1000 if cfg.datasource == "sinusoid" else 100


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def write_summaries(writer, prefix: str, evaluation: dict, step: int, classification: bool):
    """The original's scalar names, from ``evaluate`` output ([tasks, steps+1] arrays)."""
    if writer is None:
        return
    losses = evaluation["losses"].mean(axis=0)
    with writer.as_default(step=step):
        tf.summary.scalar(prefix + "Pre-update loss", losses[0])
        if classification:
            accuracies = evaluation["accuracies"].mean(axis=0)
            tf.summary.scalar(prefix + "Pre-update accuracy", accuracies[0])
        for j in range(1, len(losses)):
            tf.summary.scalar(prefix + f"Post-update loss, step {j}", losses[j])
            if classification:
                tf.summary.scalar(prefix + f"Post-update accuracy, step {j}", accuracies[j])


def _reported_pair(cfg: ExperimentConfig, evaluation: dict) -> tuple[float, float]:
    """(pre, post after num_updates): accuracies for classification, losses otherwise."""
    values = evaluation["accuracies" if cfg.classification else "losses"].mean(axis=0)
    return float(values[0]), float(values[cfg.num_updates])


def train(cfg: ExperimentConfig, learner, sources: TrainingSources,
          checkpointer: IterationCheckpointer, resume_itr: int = 0, log=print) -> int:
    """Runs iterations ``resume_itr .. pretrain + metatrain - 1``; returns the last one."""
    total = cfg.pretrain_iterations + cfg.metatrain_iterations
    interval = print_interval(cfg)
    validation_interval = interval * 5
    writer = tf.summary.create_file_writer(cfg.experiment_dir) if cfg.log else None
    log("Done initializing, starting training.")
    prelosses, postlosses = [], []
    started = time.time()
    window_start, window_itr = started, resume_itr  # rate over the last print interval
    last_done = resume_itr - 1  # the last iteration whose update has been applied
    try:
        for itr in range(resume_itr, total):
            batch = sources.train()
            if itr % SUMMARY_INTERVAL == 0:
                evaluation = learner.evaluate(batch, cfg.eval_num_updates)
                write_summaries(writer, "metatrain_", evaluation, itr, cfg.classification)
                pre, post = _reported_pair(cfg, evaluation)
                prelosses.append(pre)
                postlosses.append(post)
            if itr < cfg.pretrain_iterations:
                learner.pretrain_step(batch)
            else:
                learner.meta_train_step(batch)
            last_done = itr

            if itr != 0 and itr % interval == 0:
                if itr < cfg.pretrain_iterations:
                    line = f"Pretrain Iteration {itr}"
                else:
                    line = f"Iteration {itr - cfg.pretrain_iterations}"
                log(f"{line}: {np.mean(prelosses)}, {np.mean(postlosses)}")
                prelosses, postlosses = [], []
                now = time.time()
                rate = (itr + 1 - window_itr) / max(now - window_start, 1e-9)
                window_start, window_itr = now, itr + 1
                elapsed = now - started
                log(f"  [{itr + 1}/{total} it, {1000.0 / rate:.2f} ms/it, "
                    f"elapsed {_format_duration(elapsed)}, "
                    f"left {_format_duration((total - itr - 1) / rate)}]")
            if itr != 0 and itr % SAVE_INTERVAL == 0:
                checkpointer.save(itr)
            if (itr != 0 and itr % validation_interval == 0 and sources.val is not None):
                evaluation = learner.evaluate(sources.val(), cfg.eval_num_updates)
                write_summaries(writer, "metaval_", evaluation, itr, cfg.classification)
                pre, post = _reported_pair(cfg, evaluation)
                log(f"Validation results: {pre}, {post}")
    except KeyboardInterrupt:
        if last_done >= resume_itr:
            path = checkpointer.save(last_done)
            log(f"Interrupted: saved iteration {last_done} to {path}")
        raise
    if last_done >= resume_itr:
        checkpointer.save(last_done)
    if writer is not None:
        writer.flush()
    return last_done
