"""The training loop of the original ``train()``: same intervals, printed lines and summaries.

- every 100 iterations: TensorBoard scalars ``metatrain_Pre-update loss``,
  ``metatrain_Post-update loss, step j`` (and accuracies for classification) for
  j = 1..max(test_num_updates, num_updates), computed on the training batch before the update;
- every 1000 (sinusoid) / 100 (classification) iterations: ``Iteration i: pre, post`` with
  the means of the values collected since the last print (accuracies for classification,
  as the original), followed by a progress line of this project (rate, time left);
- every 500 iterations for classification: ``Validation results: pre, post`` on a
  meta-validation batch (also written as ``metaval_*`` summaries);
- a checkpoint every ``checkpoint_interval`` (1000, the original's) iterations, also when
  ``checkpoint_minutes`` have passed since the last save (a MiniImagenet interval is close to
  an hour on CPU), and at the end.

Checkpoint ``ckpt-i`` holds the weights after iteration ``i``; resuming continues at i + 1.
SIGINT/SIGTERM (``maml_tf.stopping``) take effect between iterations: the iteration running
finishes, ``ckpt-i`` of it is saved, and :class:`~maml_tf.stopping.Stopped` is raised, so the
checkpoint's name and content always agree. A non-finite loss or gradient stops the run with
:class:`~maml_tf.stopping.NonFiniteError` before the update is applied and before any save.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from maml_tf.checkpoint import IterationCheckpointer
from maml_tf.config import ExperimentConfig
from maml_tf.stopping import NonFiniteError, StopSignals

SUMMARY_INTERVAL = 100


@dataclasses.dataclass
class TrainingSources:
    """Where batches come from: callables returning TaskBatch-like tuples.

    Example:
        >>> import numpy as np
        >>> from maml_tf.config import ExperimentConfig
        >>> from maml_tf.learner import MetaLearner
        >>> from maml_tf.maml import InnerLoopSpec
        >>> from maml_tf.models import FullyConnectedNet
        >>> from maml_tf.trainer import TrainingSources, train
        >>> batch = tuple(np.ones([2, 5, 1]) for _ in range(4))  # inputa, labela, inputb, labelb
        >>> sources = TrainingSources(train=lambda: batch)       # no validation batches
        >>> learner = MetaLearner(FullyConnectedNet(1, 1), InnerLoopSpec(0.01, 1, False))
        >>> train(ExperimentConfig(metatrain_iterations=2), learner, sources,
        ...       checkpointer=None)      # None: no checkpoints; returns the last iteration
        Done initializing, starting training.
        1
    """

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


def _quiet_run(itr: int, total: int, cfg: ExperimentConfig, intervals) -> int:
    """How many iterations from ``itr`` on fall on none of the summary, print, save and
    validation points and on one side of the pretraining boundary (at most
    ``cfg.steps_per_execution``): those can run in one call with the same result."""
    phase = itr < cfg.pretrain_iterations
    count = 0
    while (count < cfg.steps_per_execution and itr + count < total
           and all((itr + count) % k for k in intervals)
           and ((itr + count) < cfg.pretrain_iterations) == phase):
        count += 1
    return count


class _NoCheckpoints:
    """The checkpointer of a worker that does not write (see :func:`train`)."""

    def save(self, iteration: int) -> None:
        return None

    def path(self, iteration: int) -> str:
        return f"the chief's ckpt-{iteration}"


def _non_finite(itr: int, metrics: dict, last_saved: int, cfg: ExperimentConfig):
    values = ", ".join(f"{k} {float(v):.4g}" for k, v in metrics.items() if k != "finite")
    last = f"ckpt-{last_saved}" if last_saved >= 0 else "none yet"
    then = "resume" if last_saved >= 0 else "start again"
    return NonFiniteError(
        f"iteration {itr}: the loss or a gradient is not finite ({values}); stopped before "
        f"applying it, so no checkpoint holds non-finite weights (last saved: {last}). "
        f"Lower --meta_lr (now {cfg.meta_lr:g}) and {then}")


def train(cfg: ExperimentConfig, learner, sources: TrainingSources,
          checkpointer: Optional[IterationCheckpointer], resume_itr: int = 0, log=print,
          stop: Optional[StopSignals] = None) -> int:
    """Runs iterations ``resume_itr .. pretrain + metatrain - 1``; returns the last one.

    ``checkpointer`` None: a worker of a multi-worker run other than the chief. It runs
    every computation the chief runs, in the same order (updates, summary and validation
    evaluations are collectives), and writes nothing: no checkpoints, no summaries.
    """
    stop = stop or StopSignals()   # never installed: never stops
    if checkpointer is None:
        checkpointer = _NoCheckpoints()
    total = cfg.pretrain_iterations + cfg.metatrain_iterations
    if resume_itr >= total:
        log(f"Run already complete: ckpt-{resume_itr - 1} holds all {total} iterations; "
            f"nothing to train (raise --metatrain_iterations to go on, or --overwrite to "
            f"start again)")
        return resume_itr - 1
    interval = print_interval(cfg)
    validation_interval = interval * 5
    writer = (tf.summary.create_file_writer(cfg.experiment_dir)
              if cfg.log and not isinstance(checkpointer, _NoCheckpoints) else None)
    log("Done initializing, starting training.")
    prelosses, postlosses = [], []
    started = time.time()
    window_start, window_itr = started, resume_itr  # rate over the last print interval
    last_done = resume_itr - 1  # the last iteration whose update has been applied
    last_saved, last_save_time = resume_itr - 1, started
    intervals = (SUMMARY_INTERVAL, interval, validation_interval, cfg.checkpoint_interval)
    with stop.deferred():
        itr = resume_itr
        while itr < total:
            if stop.requested:
                break
            quiet = _quiet_run(itr, total, cfg, intervals)
            if quiet > 1:  # no summary, print, save or validation point: one call for all
                batches = [sources.train()[:4] for _ in range(quiet)]
                stacked = tuple(np.stack(part) for part in zip(*batches))
                steps = (learner.pretrain_steps if itr < cfg.pretrain_iterations
                         else learner.meta_train_steps)
                applied, metrics = steps(stacked)
                if applied < quiet:
                    raise _non_finite(itr + applied, metrics, last_saved, cfg)
                last_done = itr + quiet - 1
                itr += quiet
                if time.time() - last_save_time >= 60.0 * cfg.checkpoint_minutes:
                    checkpointer.save(last_done)
                    last_saved, last_save_time = last_done, time.time()
                continue
            batch = sources.train()
            if itr % SUMMARY_INTERVAL == 0:
                evaluation = learner.evaluate(batch, cfg.eval_num_updates)
                write_summaries(writer, "metatrain_", evaluation, itr, cfg.classification)
                pre, post = _reported_pair(cfg, evaluation)
                prelosses.append(pre)
                postlosses.append(post)
            if itr < cfg.pretrain_iterations:
                metrics = learner.pretrain_step(batch)
            else:
                metrics = learner.meta_train_step(batch)
            if not bool(metrics["finite"]):
                raise _non_finite(itr, metrics, last_saved, cfg)
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
            on_interval = itr != 0 and itr % cfg.checkpoint_interval == 0
            if on_interval or time.time() - last_save_time >= 60.0 * cfg.checkpoint_minutes:
                checkpointer.save(itr)
                last_saved, last_save_time = itr, time.time()
            if (itr != 0 and itr % validation_interval == 0 and sources.val is not None):
                evaluation = learner.evaluate(sources.val(), cfg.eval_num_updates)
                write_summaries(writer, "metaval_", evaluation, itr, cfg.classification)
                pre, post = _reported_pair(cfg, evaluation)
                log(f"Validation results: {pre}, {post}")
            itr += 1
        if last_done > last_saved:
            checkpointer.save(last_done)
        if writer is not None:
            writer.flush()
    if stop.requested:
        if last_done >= resume_itr:
            raise stop.stop(f"after iteration {last_done}: saved "
                            f"{checkpointer.path(last_done)}; run the same command to resume")
        raise stop.stop("before the first iteration; nothing new to save")
    return last_done
