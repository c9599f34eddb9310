"""The meta-training loop: sampling, meta-steps, checkpoints, summaries, best policy.

Checkpoint ``ckpt-k`` holds the policy after k meta-iterations (``ckpt-0`` is the random
initialisation), so ``--resume`` continues at iteration k. Iteration k's returns are measured
with the policy of ``ckpt-k``; the policy whose post-update return (pre-update for the
pretrained baseline) was highest is also kept in ``<logdir>/best``, as the original
evaluated its best iteration.

The logdir is a run folder (:mod:`maml_tf.run_folder`): locked while training, a fresh start
over an existing run refused without ``overwrite``, changed settings applied with a line or
refused, ``progress.csv`` rows and TensorBoard points after the restored checkpoint dropped on
resume. Signals stop the run after the current iteration with its checkpoint saved; a
non-finite step is undone and stops the run (:mod:`maml_tf.stopping`).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from maml_tf import run_folder
from maml_tf.checkpoint import IterationCheckpointer
from maml_tf.distribute import DistributeError, build_strategy, check_meta_batch
from maml_tf.stopping import NonFiniteError, StopSignals, children_ignore_interrupts
from rl.config import TrainConfig
from rl.envs.registry import RELEASED_BACKWARD_FRACTION, make_env, sample_tasks
from rl.episodes import compute_advantages, merge_tasks
from rl.adaptation import PolicyAdapter, to_sample_batch
from rl.distribute import MirroredTRPO
from rl.maml_trpo import MAMLTRPO
from rl.policies import GaussianMLPPolicy
from rl.pretrain import AdamPretrainer
from rl.samplers import make_sampler


# What a training run writes in its logdir: --overwrite removes these.
RUN_FILES = ("checkpoints", "best", "progress.csv", "events.out.tfevents*",
             run_folder.RECORD_NAME, run_folder.SETTINGS_NAME, "test_*.pkl", "test_*.csv")
# Settings that define the policy or the method: refused if changed on resume.
FIXED_SETTINGS = {"env_name": "--env_name", "oracle": "--oracle", "use_maml": "--use_maml",
                  "hidden_sizes": "--hidden_sizes", "nonlinearity": "--hidden_nonlinearity",
                  "dtype": "--dtype", "init_std": "--init_std",
                  "pretrain_optimizer": "--pretrain_optimizer", "fixed_goals": "--fixed_goals",
                  "advantage_scope": "--advantage_scope",
                  "backward_fraction": "--backward_fraction"}
# Fixed settings added after runs were recorded: a record without one means this value.
FORMER_DEFAULTS = {"pretrain_optimizer": "trpo", "fixed_goals": False,
                   "advantage_scope": "task",
                   "backward_fraction": RELEASED_BACKWARD_FRACTION}


def run_settings(cfg: TrainConfig) -> dict:
    """The settings compared on resume and read by test mode, kept in config.json's
    ``resume_settings`` (speed-only ones, num_workers, left out)."""
    from rl.envs.registry import get_spec
    trpo, policy = cfg.trpo, cfg.policy
    return {"env_name": get_spec(cfg.env_name).name, "oracle": cfg.oracle,
            "use_maml": trpo.use_maml, "hidden_sizes": list(policy.hidden_sizes),
            "nonlinearity": policy.nonlinearity, "dtype": policy.dtype,
            "init_std": policy.init_std, "fast_lr": trpo.fast_lr,
            "pretrain_optimizer": trpo.pretrain_optimizer if not trpo.use_maml else "trpo",
            "pretrain_lr": trpo.pretrain_lr, "fixed_goals": cfg.fixed_goals,
            "backward_fraction": cfg.backward_fraction,
            "advantage_scope": cfg.advantage_scope,
            "num_grad_updates": trpo.num_grad_updates, "step_size": trpo.step_size,
            "meta_batch_size": cfg.meta_batch_size, "fast_batch_size": cfg.fast_batch_size,
            "max_path_length": cfg.max_path_length, "n_itr": cfg.n_itr,
            "sampling": cfg.sampling, "sampling_lanes": cfg.sampling_lanes,
            "discount": cfg.discount, "gae_lambda": cfg.gae_lambda, "seed": cfg.seed,
            "hvp": trpo.hvp, "fd_base_eps": trpo.fd_base_eps, "cg_iters": trpo.cg_iters,
            "cg_damping": trpo.cg_damping, "backtrack_ratio": trpo.backtrack_ratio,
            "max_backtracks": trpo.max_backtracks, "checkpoint_every": cfg.checkpoint_every,
            "checkpoint_minutes": cfg.checkpoint_minutes}


def _say(message: str) -> None:
    (logging.warning if message.startswith("warning") else logging.info)("%s", message)


def build_policy(cfg, obs_dim: int, act_dim: int, seed: int) -> GaussianMLPPolicy:
    return GaussianMLPPolicy(obs_dim, act_dim, cfg.hidden_sizes, cfg.init_std, seed=seed,
                             dtype=cfg.dtype, nonlinearity=cfg.nonlinearity)


class Trainer:
    """One training run in ``cfg.logdir``; holds the folder's lock until :meth:`close`.
    ``preset`` is the --experiment name, recorded in config.json.

    Example:
        >>> import os, tempfile
        >>> from rl.config import PolicyConfig, TrainConfig
        >>> from rl.trainer import Trainer
        >>> logdir = tempfile.TemporaryDirectory()
        >>> cfg = TrainConfig(env_name="point", meta_batch_size=2, fast_batch_size=2,
        ...                   max_path_length=5, n_itr=1, logdir=os.path.join(logdir.name, "run"),
        ...                   policy=PolicyConfig(hidden_sizes=(8,)))
        >>> trainer = Trainer(cfg)
        >>> history = trainer.train()              # one meta-iteration
        >>> trainer.close()
        >>> len(history), trainer.checkpointer.available_iterations()   # ckpt-0: the start
        (1, [0, 1])
        >>> logdir.cleanup()
    """

    def __init__(self, cfg: TrainConfig, stop: StopSignals | None = None,
                 preset: str | None = None):
        self.cfg = cfg
        self.preset = preset
        self.stop = stop or StopSignals()   # never installed: never stops
        self.lock = run_folder.RunLock(cfg.logdir, _say).acquire()
        self.vector_env = None
        try:
            self.strategy = self._build_strategy()
            self._prepare_folder()
            self._build()
        except BaseException:
            self.close()
            raise

    def _build_strategy(self):
        """The strategy of the TRPO meta-step (None: one device), made first: logical CPU
        devices can only be configured before TensorFlow's first operation, and a meta-batch
        that does not split is refused before anything is written or sampled."""
        cfg = self.cfg
        if cfg.advantage_scope not in ("task", "batch"):
            raise ValueError(f"--advantage_scope must be 'task' or 'batch', got "
                             f"{cfg.advantage_scope!r}")
        if cfg.advantage_scope == "batch" and cfg.trpo.use_maml:
            raise ValueError("--advantage_scope=batch pools every task's paths, which MAML's "
                             "per-task inner step cannot use: only with --use_maml=False")
        if cfg.advantage_scope == "batch" and cfg.distribute == "mirrored":
            raise DistributeError("--advantage_scope=batch makes the batch one task, and "
                                  "--distribute=mirrored splits the tasks across replicas")
        if cfg.distribute not in ("none", "mirrored"):
            raise DistributeError(f"--distribute={cfg.distribute} is not supported for RL "
                                  f"(none or mirrored)")
        if (cfg.distribute == "mirrored" and not cfg.trpo.use_maml
                and cfg.trpo.pretrain_optimizer == "adam"):
            raise DistributeError("--distribute=mirrored distributes the TRPO meta-step; "
                                  "--pretrain_optimizer=adam runs on one device")
        strategy = build_strategy(cfg.distribute, cfg.num_cpu_devices)   # None for "none"
        if strategy is None:
            return None
        check_meta_batch(cfg.meta_batch_size, strategy.num_replicas_in_sync, cfg.distribute)
        logging.info("TRPO meta-step on %d replicas (%s): %d tasks each",
                     strategy.num_replicas_in_sync, ", ".join(strategy.extended.worker_devices),
                     cfg.meta_batch_size // strategy.num_replicas_in_sync)
        return strategy

    def _prepare_folder(self) -> None:
        cfg = self.cfg
        checkpoint_dirs = [os.path.join(cfg.logdir, name) for name in ("checkpoints", "best")]
        run_folder.check_fresh_start(cfg.logdir, checkpoint_dirs, cfg.resume, cfg.overwrite)
        if cfg.overwrite:
            run_folder.clear_run(cfg.logdir, RUN_FILES, _say)
        for directory in checkpoint_dirs:
            run_folder.clean_leftovers(directory, _say)
        resuming = cfg.resume and bool(run_folder.checkpoint_iterations(checkpoint_dirs[0]))
        if resuming:
            self._refuse_former_method(run_settings(cfg))
        run_folder.compare_settings(cfg.logdir, run_settings(cfg), FIXED_SETTINGS, _say,
                                    compare=resuming, config=dataclasses.asdict(cfg),
                                    experiment=self.preset)

    def _refuse_former_method(self, settings: dict) -> None:
        """A run recorded before a fixed setting existed was trained with its former value
        (e.g. the TRPO pretrained baseline): resuming it with another one would mix two
        methods in one run, which compare_settings cannot see (it skips unrecorded keys)."""
        record = run_folder.read_record(self.cfg.logdir)
        recorded = (record or {}).get("resume_settings")
        if not isinstance(recorded, dict):
            return
        for name, former in FORMER_DEFAULTS.items():
            if name not in recorded and settings[name] != former:
                raise run_folder.RunFolderError(
                    f"the run in {self.cfg.logdir} was trained with {FIXED_SETTINGS[name]}="
                    f"{former} (recorded before that flag existed), now {settings[name]!r}: "
                    f"use another --logdir, or --overwrite to start again")

    def _build(self) -> None:
        cfg = self.cfg
        self.task_env = make_env(cfg.env_name, cfg.oracle)
        obs_dim = self.task_env.observation_space.shape[0]
        act_dim = self.task_env.action_space.shape[0]
        with children_ignore_interrupts():   # the workers stop when this process says so
            self.sampler, self.vector_env = make_sampler(
                cfg.env_name, cfg.meta_batch_size, cfg.fast_batch_size, cfg.max_path_length,
                cfg.sampling, cfg.sampling_lanes, cfg.oracle, cfg.num_workers)
        tf.random.set_seed(cfg.seed)
        self.policy = build_policy(cfg.policy, obs_dim, act_dim, cfg.seed)
        self.adapter = PolicyAdapter(self.policy, cfg.trpo.fast_lr)
        extra = {}
        if not cfg.trpo.use_maml and cfg.trpo.pretrain_optimizer == "adam":
            self.learner = AdamPretrainer(self.policy, cfg.trpo.pretrain_lr)
            extra = self.learner.trackables()
        else:
            self.learner = MAMLTRPO(self.policy, cfg.trpo) if self.strategy is None \
                else MirroredTRPO(self.policy, cfg.trpo, self.strategy)
        # --fixed_goals: the goals are drawn once, from the seed, so a resume draws the same
        self.fixed_tasks = sample_tasks(
            self.task_env, cfg.meta_batch_size, np.random.RandomState(self._seed(0, 999)),
            cfg.backward_fraction) if cfg.fixed_goals else None
        self.best_return = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
        self.best_iteration = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.checkpointer = IterationCheckpointer(
            os.path.join(cfg.logdir, "checkpoints"), max_to_keep=5, policy=self.policy,
            best_return=self.best_return, best_iteration=self.best_iteration, **extra)
        self.best_checkpointer = IterationCheckpointer(
            os.path.join(cfg.logdir, "best"), max_to_keep=1, policy=self.policy)
        self.writer = None   # created by train(), after the event files are truncated
        self.progress_path = os.path.join(cfg.logdir, "progress.csv")
        self.last_saved = None

    # ------------------------------------------------------------------
    def _seed(self, iteration: int, step: int) -> int:
        return int(np.random.SeedSequence([self.cfg.seed, iteration, step]).generate_state(1)[0])

    def run_iteration(self, iteration: int) -> dict:
        cfg = self.cfg
        started = time.time()
        if self.fixed_tasks is not None:
            tasks = self.fixed_tasks
        else:
            task_rng = np.random.RandomState(self._seed(iteration, 999))
            tasks = sample_tasks(self.task_env, cfg.meta_batch_size, task_rng,
                                 cfg.backward_fraction)
        theta = self.policy.get_flat()
        num_batches = cfg.trpo.num_grad_updates + 1 if cfg.trpo.use_maml else 1
        episodes, params, sample_time, steps_before = [], None, 0.0, self.sampler.steps_taken
        for step in range(num_batches):
            t0 = time.time()
            batch = self.sampler.sample(tasks, self.adapter.sampling_policy(params),
                                        seed=self._seed(iteration, step))
            sample_time += time.time() - t0
            if cfg.advantage_scope == "batch":
                batch = merge_tasks(batch)
            episodes.append(compute_advantages(batch, cfg.discount, cfg.gae_lambda))
            if step + 1 < num_batches:
                params = self.adapter.adapted_params(
                    theta, [to_sample_batch(e, self.adapter.dtype) for e in episodes])
        paths = [e.episode_exists().sum(axis=1) for e in episodes]
        logging.info("itr %d | paths per task (%s): %s", iteration, cfg.sampling, " / ".join(
            f"mean {p.mean():.1f} min {p.min()} max {p.max()}" for p in paths))
        stats = {
            "return_pre_update": float(episodes[0].average_return_per_task().mean()),
            "return_post_update": float(episodes[-1].average_return_per_task().mean()),
            "time_sampling": sample_time,
            "env_steps": self.sampler.steps_taken - steps_before,
        }
        score = stats["return_post_update"]
        if score > self.best_return.numpy():   # theta_k is still in the variables here
            self.best_return.assign(score)
            self.best_iteration.assign(iteration)
            self.best_checkpointer.save(iteration)
        stats.update(self.learner.meta_step(episodes[:-1], episodes[-1]))
        self._check_finite(iteration, theta, stats)
        stats["time_iteration"] = time.time() - started
        stats["env_steps_per_second"] = stats["env_steps"] / max(sample_time, 1e-9)
        return stats

    def _check_finite(self, iteration: int, theta, stats: dict) -> None:
        """Undoes the step and raises NonFiniteError if the parameters or the quantities the
        step was computed from are not finite (a rejected line search may report NaN loss and
        KL for its last candidate: that is not a failure, the parameters are restored)."""
        keys = ("return_pre_update", "return_post_update", "loss_before", "grad_norm")
        bad = {k: stats[k] for k in keys if not math.isfinite(stats[k])}
        if not bad and np.all(np.isfinite(self.policy.get_flat().numpy())):
            return
        self.policy.set_flat(theta)
        values = ", ".join(f"{k} {v}" for k, v in bad.items()) or "parameters"
        raise NonFiniteError(
            f"iteration {iteration}: not finite ({values}); stopped before keeping the step, "
            f"so no checkpoint holds non-finite parameters (last saved: ckpt-{self.last_saved} "
            f"in {self.checkpointer.directory}). Lower --step_size or --fast_lr and resume")

    def _log(self, iteration: int, stats: dict) -> None:
        with self.writer.as_default(step=iteration):
            for key, value in stats.items():
                tf.summary.scalar(key, float(value))
        self.writer.flush()
        write_header = not os.path.exists(self.progress_path)
        try:
            with open(self.progress_path, "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["iteration"] + sorted(stats))
                if write_header:
                    writer.writeheader()
                writer.writerow({"iteration": iteration, **stats})
        except OSError as error:
            raise run_folder.RunFolderError(
                f"cannot write {self.progress_path}: {error.strerror or error}") from None
        logging.info(
            "itr %d | return pre %.2f post %.2f | KL %.4f | loss %.4g -> %.4g | %s%d backtracks"
            " | %.1fs (sampling %.1fs, meta-step %.1fs)", iteration,
            stats["return_pre_update"], stats["return_post_update"], stats["mean_kl"],
            stats["loss_before"], stats["loss_after"],
            "" if stats["accepted"] else "REJECTED after ", stats["backtracks"],
            stats["time_iteration"], stats["time_sampling"], stats["time_meta_step"])

    def _save(self, done: int) -> None:
        self.checkpointer.save(done)
        self.last_saved = done

    def train(self) -> list:
        """Meta-trains up to ``n_itr`` iterations from the newest intact checkpoint (when
        resuming) or from scratch; returns the statistics of the iterations run."""
        cfg = self.cfg
        restored = None
        if cfg.resume:
            restored = self.checkpointer.restore(log=_say, set_aside_damaged=True)
        start = restored or 0
        if restored is not None:
            self.last_saved = restored
            logging.info("resumed from %s at iteration %d (best %.2f at %d)",
                         self.checkpointer.directory, start, self.best_return.numpy(),
                         self.best_iteration.numpy())
        # rows and TensorBoard points of iterations after the checkpoint are redone
        rows = run_folder.truncate_progress_csv(self.progress_path, start)
        points = run_folder.truncate_events(cfg.logdir, start)
        if rows or points:
            logging.info("dropped %d progress.csv rows and %d TensorBoard points of "
                         "iterations >= %d (redone from the checkpoint)", rows, points, start)
        if start >= cfg.n_itr:
            logging.info("Run already complete: ckpt-%d holds all %d iterations; nothing to "
                         "train (raise --n_itr to go on, or --overwrite to start again)",
                         start, cfg.n_itr)
            return []
        self.writer = tf.summary.create_file_writer(cfg.logdir)
        history, done, last_save_time = [], start, time.time()
        with self.stop.deferred():
            if restored is None:
                self._save(0)   # the random initialisation (random baseline)
            for iteration in range(start, cfg.n_itr):
                if self.stop.requested:
                    break
                stats = self.run_iteration(iteration)
                self._log(iteration, stats)
                history.append(stats)
                done = iteration + 1
                if (done % cfg.checkpoint_every == 0 or done == cfg.n_itr
                        or time.time() - last_save_time >= 60.0 * cfg.checkpoint_minutes):
                    self._save(done)
                    last_save_time = time.time()
            if done != self.last_saved:
                self._save(done)
        if self.stop.requested:
            raise self.stop.stop(f"after iteration {done - 1}: saved "
                                 f"{self.checkpointer.path(done)} (the policy after {done} "
                                 f"iterations); run the same command to resume")
        return history

    def close(self) -> None:
        if self.vector_env is not None:
            self.vector_env.close()
            self.vector_env = None
        if getattr(self, "writer", None) is not None:
            self.writer.close()
            self.writer = None
        self.lock.release()
