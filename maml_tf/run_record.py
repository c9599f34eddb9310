"""Test and export a supervised run from its record (``config.json``), not from retyped flags.

Why: the original found a trained model only when every flag that names the experiment
directory was typed again, and a flag that changed the architecture silently built another
model. Training now records the resolved configuration (:func:`maml_tf.run_folder.
compare_settings`); test mode (and the export it can do) finds the run and takes from the
record every setting the command line does not give:

- the run is the directory the flags name (as before), else ``--logdir`` itself when it holds
  a record, else the one run below ``--logdir`` with a record;
- a flag that would change the model (:data:`MODEL_FLAGS`) and contradicts the record is an
  error naming both values;
- the test-time settings K (``update_batch_size``), ``update_lr`` and ``num_updates`` stay free
  as in the original; left out, they are the training values.

Runs from before records keep working as they did (one line says so).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Iterable, Optional

from maml_tf.config import ExperimentConfig
from maml_tf.run_folder import RECORD_NAME, RunFolderError, checkpoint_iterations, read_record

# Settings that define the model: a contradicting flag is an error.
MODEL_FLAGS = ("datasource", "num_classes", "num_filters", "conv", "max_pool", "norm",
               "baseline")
# Settings of the training that name its directory or its data: taken from the record
# unless given (the directory-naming training K and step size are checked like the model).
TRAINING_FLAGS = ("meta_batch_size", "stop_grad", "metatrain_iterations",
                  "pretrain_iterations", "meta_lr", "seed", "omniglot_folder",
                  "miniimagenet_folder")
NAMING_FLAGS = {"train_update_batch_size": "train_update_batch_size",
                "train_update_lr": "train_update_lr"}
# Free at test time (the original's --train_update_* let them differ from training).
TEST_FLAGS = {"update_batch_size": "train_update_batch_size",
              "update_lr": "train_update_lr", "num_updates": "num_updates"}


@dataclasses.dataclass
class RecordedRunConfig(ExperimentConfig):
    """An ExperimentConfig whose experiment directory is the recorded run's, whatever the
    test-time settings (the directory name encodes the training K, step and step count).

    Example:
        >>> from maml_tf.run_record import RecordedRunConfig
        >>> cfg = RecordedRunConfig(datasource="sinusoid", update_batch_size=5, train=False,
        ...                         logdir="logs/sine", run_dir="logs/sine/trained_with_k10")
        >>> cfg.experiment_dir                  # the recorded run's, whatever K is tested
        'logs/sine/trained_with_k10'
        >>> RecordedRunConfig(logdir="logs/sine").experiment_dir     # no record: the flags'
        'logs/sine/cls_5.mbs_25.ubs_5.numstep1.updatelr0.001batchnorm'
    """

    run_dir: str = ""

    @property
    def experiment_dir(self) -> str:
        return self.run_dir or super().experiment_dir


def find_run(cfg: ExperimentConfig) -> Optional[str]:
    """The run directory test mode should use, or None when none is found."""
    named = cfg.experiment_dir
    if os.path.exists(os.path.join(named, RECORD_NAME)) or checkpoint_iterations(named):
        return named
    logdir = cfg.logdir.rstrip("/") or cfg.logdir
    if os.path.exists(os.path.join(logdir, RECORD_NAME)):
        return logdir
    below = sorted(os.path.dirname(p) for p in
                   glob.glob(os.path.join(glob.escape(logdir), "*", RECORD_NAME)))
    if len(below) > 1:
        raise RunFolderError(
            f"--logdir={cfg.logdir} holds {len(below)} recorded runs "
            f"({', '.join(os.path.basename(p) for p in below)}); pass one of them as --logdir "
            f"or the flags that name it")
    return below[0] if below else None


def same_value(flag_value, recorded) -> bool:
    """Equal, floats up to rounding (a JSON round trip); also compare's test of a record."""
    if isinstance(flag_value, float) or isinstance(recorded, float):
        return recorded is not None and flag_value is not None and \
            abs(float(flag_value) - float(recorded)) <= 1e-12 * max(1.0, abs(float(recorded)))
    return flag_value == recorded


def resolve_for_test(cfg: ExperimentConfig, explicit: Iterable[str],
                     log: Callable[[str], None] = print) -> ExperimentConfig:
    """``cfg`` completed from the run's record (test mode); ``explicit``: the flags the
    command line gave. Raises RunFolderError for a contradicting model flag."""
    if cfg.train:
        return cfg
    explicit = set(explicit)
    run_dir = find_run(cfg)
    if run_dir is None:
        return cfg
    record = read_record(run_dir)
    if record is None:
        log(f"No {RECORD_NAME} in {run_dir} (a run from before run records): the flags "
            f"define the model, as before")
        return cfg
    recorded = record["config"]
    path = os.path.join(run_dir, RECORD_NAME)
    checked = list(MODEL_FLAGS) + [name for name in NAMING_FLAGS
                                   if getattr(cfg, name) != -1]
    conflicts = [name for name in checked if name in explicit and name in recorded
                 and not same_value(getattr(cfg, name), recorded[name])]
    if conflicts:
        details = "; ".join(f"--{name}={getattr(cfg, name)} but the run was trained with "
                            f"--{name}={recorded[name]}" for name in conflicts)
        raise RunFolderError(
            f"{details} ({path}): these flags define the model; leave them out to use the "
            f"recorded values")
    values = {field.name: getattr(cfg, field.name) for field in dataclasses.fields(
        ExperimentConfig)}
    for name in MODEL_FLAGS + TRAINING_FLAGS + tuple(NAMING_FLAGS):
        if name not in explicit and name in recorded:
            values[name] = recorded[name]
    for name, source in TEST_FLAGS.items():
        if name not in explicit and source in recorded:
            values[name] = recorded[source]
    resolved = RecordedRunConfig(**values, run_dir=run_dir)
    taken = sorted(name for name in values if name not in explicit and name in recorded
                   and values[name] != getattr(cfg, name))
    if taken:
        log(f"Run record {path} (code {record.get('code_version', 'unknown')}): "
            f"{', '.join(f'{n}={values[n]}' for n in taken)} taken from it")
    return resolved
