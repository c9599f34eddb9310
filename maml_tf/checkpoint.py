"""Checkpoints shared by the supervised and RL trainers.

A thin layer over ``tf.train.Checkpoint`` + ``tf.train.CheckpointManager`` that stores the
iteration number inside the checkpoint, so ``--resume`` continues exactly where a run stopped
and ``--test_iter`` can pick a particular checkpoint. The original saved ``model{itr}`` files;
here the checkpoint number *is* the iteration (``ckpt-{itr}``), which keeps that meaning.

Which checkpoints exist is read from the files themselves, not from TensorFlow's
``checkpoint`` state file: a missing or garbled state file must never make a run restart from
iteration 0 while checkpoints are in the folder. Every checkpoint is verified before it is
used (all tensors read, so the shards' checksums are checked, and every float finite); a
damaged newest checkpoint gives a warning naming the file and the next older intact one is
used. A restore must match every variable of the model both ways (:meth:`IterationCheckpointer.
unmatched`): TensorFlow's own status checks let a smaller model take part of a bigger
checkpoint, and a checkpoint without the model's variables pass, and then random weights
would be tested. Writers rewrite the state file from the files before their first save, so
``tf.train.latest_checkpoint`` and other tools see the truth too.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from maml_tf.run_folder import checkpoint_iterations

DAMAGED_DIR = "damaged"
# Trackables whose variables are not all in every checkpoint: Adam's slots are created on the
# first step, so a checkpoint read before training has nothing to match them with.
UNVERIFIED = ("optimizer",)


class CheckpointError(ValueError):
    """A checkpoint that was asked for does not exist, is damaged or does not fit the model."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions, I/O error)."""


def checkpoint_problem(prefix: str) -> Optional[str]:
    """None when the checkpoint at ``prefix`` is intact, else what is wrong with it.

    Reads every tensor: TensorFlow checks each shard's checksums on read, so a truncated or
    flipped file is found here rather than half-way through a restore. Non-finite floats
    count as damage (such weights are useless for training and testing alike), except an
    infinite scalar: that is a record's "none yet" value, e.g. an RL run's best return before
    its first iteration (a run killed then must resume from that ``ckpt-0``, not call it
    damaged). NaN is damage everywhere.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key, dtype in reader.get_variable_to_dtype_map().items():
            value = np.asarray(reader.get_tensor(key))
            if not dtype.is_floating or np.all(np.isfinite(value)):
                continue
            if value.size == 1 and not np.isnan(value).any():
                continue
            return f"holds non-finite values (NaN or inf) in {key}"
    except Exception as error:   # noqa: BLE001 -- any failure to read it whole is damage
        # (OpError for bad sstables and checksums, IndexError for a truncated data shard)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        return message.strip().splitlines()[0][:300]
    return None


class IterationCheckpointer:
    """Saves and restores ``trackables`` (a model, an optimizer, ...) keyed by iteration.

    ``max_to_keep=None`` keeps every checkpoint (the original kept all ``model{itr}`` files and
    ``--test_iter`` may ask for any of them); RL runs pass a small number. Creating one writes
    nothing: test mode may read a folder another process is training in.

    Example:
        >>> import tempfile
        >>> from maml_tf.checkpoint import IterationCheckpointer
        >>> from maml_tf.models import FullyConnectedNet
        >>> model = FullyConnectedNet(1, 1, (40, 40))
        >>> checkpointer = IterationCheckpointer(tempfile.mkdtemp(), model=model)
        >>> _ = checkpointer.save(1000)            # ckpt-1000: the weights after iteration 1000
        >>> _ = model.w1.assign(model.w1 * 0.0)
        >>> checkpointer.restore()                  # the newest intact checkpoint: its iteration
        1000
        >>> bool((model.w1.numpy() != 0).any())
        True
    """

    def __init__(self, directory: str, max_to_keep: Optional[int] = None, **trackables):
        self.directory = directory
        self.max_to_keep = max_to_keep
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        self.checkpoint = tf.train.Checkpoint(iteration=self.iteration, **trackables)
        self._verified = {"iteration": self.iteration, **{
            name: value for name, value in trackables.items() if name not in UNVERIFIED}}
        self._expected_keys = None
        self._manager = None

    # -- discovery -----------------------------------------------------------------------------
    def path(self, iteration: int) -> str:
        return os.path.join(self.directory, f"ckpt-{iteration}")

    def available_iterations(self) -> list[int]:
        """Iterations that have a checkpoint index in the directory, ascending."""
        return checkpoint_iterations(self.directory)

    def newest_intact(self, log: Callable[[str], None] = print,
                      set_aside_damaged: bool = False) -> Optional[int]:
        """The newest checkpoint that passes :func:`checkpoint_problem`, None if there is none.

        Each damaged one met on the way is named in a warning; ``set_aside_damaged`` (only for
        the folder's lock holder) moves its files to ``damaged/`` so that it is neither tried
        again nor overwritten. Raises CheckpointError when checkpoints exist but none is
        intact: starting again from iteration 0 would silently throw the run away.
        """
        iterations = self.available_iterations()
        damaged = []
        for iteration in reversed(iterations):
            problem = checkpoint_problem(self.path(iteration))
            if problem is None:
                return iteration
            damaged.append(iteration)
            log(f"warning: checkpoint {self.path(iteration)} is damaged ({problem}); "
                f"trying the next older one")
            if set_aside_damaged:
                self._set_aside(iteration, log)
        if damaged:
            raise CheckpointError(
                f"every checkpoint in {self.directory} is damaged "
                f"(ckpt-{', ckpt-'.join(str(i) for i in sorted(damaged))}); nothing to "
                f"resume or test from. Pass --overwrite to start the run again")
        return None

    def _set_aside(self, iteration: int, log) -> None:
        target = os.path.join(self.directory, DAMAGED_DIR)
        os.makedirs(target, exist_ok=True)
        for path in glob.glob(glob.escape(self.path(iteration)) + ".*"):
            os.replace(path, os.path.join(target, os.path.basename(path)))
        log(f"  moved the files of ckpt-{iteration} to {target}/")

    # -- restore -------------------------------------------------------------------------------
    def expected_keys(self) -> dict:
        """The variables a checkpoint of the verified trackables holds, name -> shape (e.g.
        ``model/adapted/w1``): read from a probe checkpoint written to a temporary folder,
        which names them exactly as a save does (once per checkpointer)."""
        if self._expected_keys is None:
            with tempfile.TemporaryDirectory(prefix="ckpt_probe_") as folder:
                probe = tf.train.Checkpoint(**self._verified).write(
                    os.path.join(folder, "probe"))
                self._expected_keys = variable_keys(probe, self._verified)
        return self._expected_keys

    def unmatched(self, path: str) -> tuple[list, list]:
        """(variables of the model missing from the checkpoint at ``path`` or of another
        shape, variables the checkpoint holds for the model that the model does not have).

        Checkpoints written before model weights were saved by name (commit c5b260c) hold
        them only through the optimizer's list of trainable variables; such a checkpoint
        matches when that list has the model's trainable variables' shapes, in order.
        """
        expected = dict(self.expected_keys())
        held = variable_keys(path, self._verified)
        for root, trackable in self._verified.items():
            if root == "iteration" or any(k.startswith(root + "/") for k in held):
                continue
            through_optimizer = _optimizer_list_shapes(path)
            model_shapes = [tuple(v.shape) for v in getattr(trackable, "trainable_variables",
                                                             [])]
            if through_optimizer and through_optimizer == model_shapes:
                expected = {k: v for k, v in expected.items() if not k.startswith(root + "/")}
            elif through_optimizer:
                return ([f"{root} (its trainable variables have the shapes {model_shapes}; "
                         f"the checkpoint's, saved through the optimizer, "
                         f"{through_optimizer})"], [])
        missing = [k if k not in held else f"{k} (shape {list(expected[k])} in the model, "
                   f"{list(held[k])} in the checkpoint)"
                   for k in sorted(expected) if held.get(k) != expected[k]]
        return missing, sorted(set(held) - set(expected))

    def verify(self, path: str) -> None:
        """Raises CheckpointError naming the checkpoint and the unmatched variables unless
        ``path`` holds exactly the variables of the model (the optimizer aside)."""
        missing, extra = self.unmatched(path)
        if not missing and not extra:
            return
        parts = []
        if missing:
            parts.append(f"not in the checkpoint: {_names(missing)}")
        if extra:
            parts.append(f"in the checkpoint but not in the model: {_names(extra)}")
        raise CheckpointError(
            f"checkpoint {path} does not match the model built from these flags "
            f"({'; '.join(parts)}); use the flags it was trained with")

    def restore(self, iteration: int = -1, expect_partial: bool = False,
                log: Callable[[str], None] = print,
                set_aside_damaged: bool = False) -> Optional[int]:
        """Restores the checkpoint of ``iteration`` (-1: the newest intact one).

        Returns the restored iteration, or None when the directory has no checkpoint and the
        latest was asked for. Raises CheckpointError naming the file when a specific iteration
        is missing or damaged, or when a checkpoint does not fit the model.
        """
        if iteration is None or iteration < 0:
            iteration = self.newest_intact(log, set_aside_damaged)
            if iteration is None:
                return None
        else:
            if not os.path.exists(self.path(iteration) + ".index"):
                raise CheckpointError(
                    f"no checkpoint for iteration {iteration} in {self.directory}; "
                    f"available: {self.available_iterations() or 'none'}")
            problem = checkpoint_problem(self.path(iteration))
            if problem is not None:
                raise CheckpointError(f"checkpoint {self.path(iteration)} is damaged: {problem}")
        path = self.path(iteration)
        self.verify(path)
        try:
            status = self.checkpoint.restore(path)
            if expect_partial:
                status.expect_partial()
            else:
                status.assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:
            message = (getattr(error, "message", None) or str(error)).strip().splitlines()[0]
            raise CheckpointError(
                f"checkpoint {path} does not fit the model built from these flags "
                f"({message[:300]}); use the flags it was trained with") from None
        return int(self.iteration.numpy())

    # -- save ----------------------------------------------------------------------------------
    def _writer(self) -> tf.train.CheckpointManager:
        """The CheckpointManager, created on the first save after the state file has been
        rewritten from the files, so the manager's list (and its max_to_keep sweep) is right."""
        if self._manager is None:
            os.makedirs(self.directory, exist_ok=True)
            self.write_state_file(self.available_iterations())
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, self.directory, max_to_keep=self.max_to_keep,
                checkpoint_name="ckpt")
        return self._manager

    def write_state_file(self, iterations: list[int]) -> None:
        """TensorFlow's ``checkpoint`` file listing ``iterations`` (relative names), written
        under a temporary name and renamed, as TensorFlow itself does."""
        state = os.path.join(self.directory, "checkpoint")
        if not iterations:
            if os.path.exists(state):
                os.remove(state)
            return
        lines = [f'model_checkpoint_path: "ckpt-{iterations[-1]}"']
        lines += [f'all_model_checkpoint_paths: "ckpt-{i}"' for i in iterations]
        # With timestamps (the files' times), CheckpointManager lists them again on its next
        # save and its max_to_keep sweep covers them; without, it treats them as preserved.
        lines += [f"all_model_checkpoint_timestamps: "
                  f"{os.path.getmtime(self.path(i) + '.index'):.6f}" for i in iterations]
        temporary = state + ".rewrite-tmp"
        with open(temporary, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(temporary, state)

    def save(self, iteration: int) -> str:
        """Writes a checkpoint numbered ``iteration``; returns its path.

        A failed write (disk full, I/O error) raises CheckpointWriteError naming the path and
        the newest checkpoint that is still there; the partial files are removed.
        """
        try:
            self.iteration.assign(iteration)
            return self._writer().save(checkpoint_number=iteration)
        except (tf.errors.OpError, OSError) as error:
            reason = getattr(error, "message", None) or getattr(error, "strerror", None) \
                or str(error)
            self._remove_partial(iteration)
            kept = [i for i in self.available_iterations() if i != iteration]
            last = f"ckpt-{kept[-1]} is kept" if kept else "no earlier checkpoint exists"
            raise CheckpointWriteError(
                f"could not write checkpoint {self.path(iteration)}: "
                f"{str(reason).strip().splitlines()[0][:200]}; the last good one, {last}"
            ) from None

    def _remove_partial(self, iteration: int) -> None:
        prefix = glob.escape(self.path(iteration))
        for path in glob.glob(prefix + "_temp*") + glob.glob(prefix + ".*"):
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
            except OSError:
                pass


def variable_keys(prefix: str, roots) -> dict:
    """Variables in the checkpoint at ``prefix`` under the top-level names ``roots``, name
    (without TensorFlow's ``/.ATTRIBUTES/VARIABLE_VALUE``) -> shape; optimizer slots left out."""
    keys = {}
    for key, shape in tf.train.list_variables(prefix):
        if "/.ATTRIBUTES/" not in key or "/.OPTIMIZER_SLOT/" in key:
            continue
        if key.split("/", 1)[0] in roots:
            keys[key.split("/.ATTRIBUTES/", 1)[0]] = tuple(shape)
    return keys


def _optimizer_list_shapes(prefix: str) -> list:
    """Shapes of ``optimizer/_trainable_variables/0, 1, ...`` in the checkpoint, in order."""
    found = {}
    for key, shape in tf.train.list_variables(prefix):
        head = "optimizer/_trainable_variables/"
        if key.startswith(head) and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE"):
            index = key[len(head):].split("/", 1)[0]
            if index.isdigit():
                found[int(index)] = tuple(shape)
    return [found[i] for i in sorted(found)] if sorted(found) == list(range(len(found))) \
        else []


def _names(keys: list, shown: int = 8) -> str:
    text = ", ".join(keys[:shown])
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
