"""Checkpoints shared by the supervised and RL trainers.

A thin layer over ``tf.train.Checkpoint`` + ``tf.train.CheckpointManager`` that stores the
iteration number inside the checkpoint, so ``--resume`` continues exactly where a run stopped
and ``--test_iter`` can pick a particular checkpoint. The original saved ``model{itr}`` files;
here the checkpoint number *is* the iteration (``ckpt-{itr}``), which keeps that meaning.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import tensorflow as tf


class CheckpointError(ValueError):
    """A checkpoint that was asked for does not exist or does not fit the model."""


class IterationCheckpointer:
    """Saves and restores ``trackables`` (a model, an optimizer, ...) keyed by iteration.

    ``max_to_keep=None`` keeps every checkpoint (the original kept all ``model{itr}`` files and
    ``--test_iter`` may ask for any of them); RL runs pass a small number.
    """

    def __init__(self, directory: str, max_to_keep: Optional[int] = None, **trackables):
        self.directory = directory
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        self.checkpoint = tf.train.Checkpoint(iteration=self.iteration, **trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep, checkpoint_name="ckpt")

    def save(self, iteration: int) -> str:
        """Writes a checkpoint numbered ``iteration``; returns its path."""
        self.iteration.assign(iteration)
        return self.manager.save(checkpoint_number=iteration)

    def available_iterations(self) -> list[int]:
        """Iterations that have a checkpoint in the directory, ascending."""
        found = []
        for path in self.manager.checkpoints:
            match = re.search(r"ckpt-(\d+)$", path)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def restore(self, iteration: int = -1, expect_partial: bool = False) -> Optional[int]:
        """Restores the checkpoint of ``iteration`` (-1: the latest).

        Returns the restored iteration, or None when the directory has no checkpoint and the
        latest was asked for. Raises CheckpointError naming the directory when a specific
        iteration is missing.
        """
        if iteration is None or iteration < 0:
            path = self.manager.latest_checkpoint
            if path is None:
                return None
        else:
            path = os.path.join(self.directory, f"ckpt-{iteration}")
            if not tf.io.gfile.exists(path + ".index"):
                raise CheckpointError(
                    f"no checkpoint for iteration {iteration} in {self.directory}; "
                    f"available: {self.available_iterations() or 'none'}")
        status = self.checkpoint.restore(path)
        if expect_partial:
            status.expect_partial()
        return int(self.iteration.numpy())
