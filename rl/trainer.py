"""The meta-training loop: sampling, meta-steps, checkpoints, summaries, best policy.

Checkpoint ``ckpt-k`` holds the policy after k meta-iterations (``ckpt-0`` is the random
initialisation), so ``--resume`` continues at iteration k. Iteration k's returns are measured
with the policy of ``ckpt-k``; the policy whose post-update return (pre-update for the
pretrained baseline) was highest is also kept in ``<logdir>/best``, as the original
evaluated its best iteration.
"""
from __future__ import annotations

import csv
import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from maml_tf.checkpoint import IterationCheckpointer
from rl.config import TrainConfig
from rl.envs.registry import make_env, make_vector_env
from rl.episodes import compute_advantages
from rl.maml_trpo import MAMLTRPO, to_task_batch
from rl.policies import GaussianMLPPolicy
from rl.samplers import BatchSampler


def build_policy(cfg, obs_dim: int, act_dim: int, seed: int) -> GaussianMLPPolicy:
    return GaussianMLPPolicy(obs_dim, act_dim, cfg.hidden_sizes, cfg.init_std, seed=seed,
                             dtype=cfg.dtype, nonlinearity=cfg.nonlinearity)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.task_env = make_env(cfg.env_name, cfg.oracle)
        obs_dim = self.task_env.observation_space.shape[0]
        act_dim = self.task_env.action_space.shape[0]
        self.vector_env = make_vector_env(cfg.env_name, cfg.meta_batch_size * cfg.fast_batch_size,
                                          cfg.oracle, cfg.num_workers)
        self.sampler = BatchSampler(self.vector_env, cfg.meta_batch_size, cfg.fast_batch_size,
                                    cfg.max_path_length)
        tf.random.set_seed(cfg.seed)
        self.policy = build_policy(cfg.policy, obs_dim, act_dim, cfg.seed)
        self.learner = MAMLTRPO(self.policy, cfg.trpo)
        self.best_return = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
        self.best_iteration = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.checkpointer = IterationCheckpointer(
            os.path.join(cfg.logdir, "checkpoints"), max_to_keep=5, policy=self.policy,
            best_return=self.best_return, best_iteration=self.best_iteration)
        self.best_checkpointer = IterationCheckpointer(
            os.path.join(cfg.logdir, "best"), max_to_keep=1, policy=self.policy)
        self.writer = tf.summary.create_file_writer(cfg.logdir)
        self.progress_path = os.path.join(cfg.logdir, "progress.csv")

    # ------------------------------------------------------------------
    def _seed(self, iteration: int, step: int) -> int:
        return int(np.random.SeedSequence([self.cfg.seed, iteration, step]).generate_state(1)[0])

    def run_iteration(self, iteration: int) -> dict:
        cfg = self.cfg
        started = time.time()
        task_rng = np.random.RandomState(self._seed(iteration, 999))
        tasks = self.task_env.sample_tasks(cfg.meta_batch_size, task_rng)
        theta = self.policy.get_flat()
        num_batches = cfg.trpo.num_grad_updates + 1 if cfg.trpo.use_maml else 1
        episodes, params, sample_time, steps_before = [], None, 0.0, self.sampler.steps_taken
        for step in range(num_batches):
            t0 = time.time()
            batch = self.sampler.sample(tasks, self.learner.sampling_policy(params),
                                        seed=self._seed(iteration, step))
            sample_time += time.time() - t0
            episodes.append(compute_advantages(batch, cfg.discount, cfg.gae_lambda))
            if step + 1 < num_batches:
                params = self.learner.adapted_params(
                    theta, [to_task_batch(e, self.learner.dtype) for e in episodes])
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
        stats["time_iteration"] = time.time() - started
        stats["env_steps_per_second"] = stats["env_steps"] / max(sample_time, 1e-9)
        return stats

    def _log(self, iteration: int, stats: dict) -> None:
        with self.writer.as_default(step=iteration):
            for key, value in stats.items():
                tf.summary.scalar(key, float(value))
        self.writer.flush()
        write_header = not os.path.exists(self.progress_path)
        with open(self.progress_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["iteration"] + sorted(stats))
            if write_header:
                writer.writeheader()
            writer.writerow({"iteration": iteration, **stats})
        logging.info(
            "itr %d | return pre %.2f post %.2f | KL %.4f | loss %.4g -> %.4g | %s%d backtracks"
            " | %.1fs (sampling %.1fs, meta-step %.1fs)", iteration,
            stats["return_pre_update"], stats["return_post_update"], stats["mean_kl"],
            stats["loss_before"], stats["loss_after"],
            "" if stats["accepted"] else "REJECTED after ", stats["backtracks"],
            stats["time_iteration"], stats["time_sampling"], stats["time_meta_step"])

    def train(self) -> list:
        cfg = self.cfg
        start = 0
        if cfg.resume:
            restored = self.checkpointer.restore()
            if restored is not None:
                start = restored
                logging.info("resumed from %s at iteration %d (best %.2f at %d)",
                             self.checkpointer.directory, start, self.best_return.numpy(),
                             self.best_iteration.numpy())
        if start == 0:
            self.checkpointer.save(0)   # the random initialisation (random baseline)
        history = []
        for iteration in range(start, cfg.n_itr):
            stats = self.run_iteration(iteration)
            self._log(iteration, stats)
            history.append(stats)
            done = iteration + 1
            if done % cfg.checkpoint_every == 0 or done == cfg.n_itr:
                self.checkpointer.save(done)
        return history

    def close(self) -> None:
        self.vector_env.close()
