"""Flags of ``import_tf1_checkpoint.py``: main.py's flags plus the checkpoint to import.

The architecture and the experiment directory come from the same flags as ``main.py`` (so a
checkpoint is imported with the flags of the run that wrote it, and the test mode then finds
it with those flags). Only ``import_tf1_checkpoint.py`` imports this module.
"""
from __future__ import annotations

from absl import flags

from flags import supervised  # noqa: F401  (defines main.py's flags and their validators)

FLAGS = flags.FLAGS

flags.DEFINE_string("tf1_checkpoint", None,
                    "prefix of a checkpoint written by the original TF1 code, e.g. "
                    "logs/miniimagenet1shot/<experiment>/model59000 (the files PREFIX.index "
                    "and PREFIX.data-*).")
flags.DEFINE_integer("tf1_iteration", -1,
                     "iteration the imported checkpoint is saved as (ckpt-N); -1: the number "
                     "in the original's file name model{itr}.")
flags.mark_flag_as_required("tf1_checkpoint")
flags.register_validator("tf1_iteration", lambda v: v is not None and v >= -1,
                         message="--tf1_iteration must be -1 (from the file name) or >= 0")


def import_request_from_flags():
    """(ExperimentConfig, checkpoint prefix, iteration or None) from the parsed flags."""
    iteration = FLAGS.tf1_iteration if FLAGS.tf1_iteration >= 0 else None
    return supervised.config_from_flags(), FLAGS.tf1_checkpoint, iteration
