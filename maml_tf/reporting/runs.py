"""Which run folder holds a preset's results: found by the run's record, not by its path.

Why: compare used to recompute a preset's experiment directory from its flags and looked
there only, so a run folder that was moved or renamed, or trained with bare flags into another
``--logdir``, showed ``-``. Every training now writes ``config.json`` (the resolved
configuration and the ``--experiment`` preset name, :mod:`maml_tf.run_record`), so compare
looks for the records under the log root:

- a record naming the preset is the preset's run if its settings (:data:`SETTINGS`) are the
  preset's; one that contradicts them is not used, and a note says why;
- a record without a preset name (a run started with bare flags) is the preset's run when
  its settings are the preset's; one naming another preset never is (the imported authors'
  checkpoint has the flags of ``miniimagenet_1shot`` but is its own row);
- of several, the run in the preset's own folder, then one that was tested, then the longest
  trained; without any, the preset's own folder as before (runs from before records).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Optional

from maml_tf.run_folder import RECORD_NAME, RunFolderError, checkpoint_iterations, read_record
from maml_tf.run_record import MODEL_FLAGS, same_value

# The settings that make a run the preset's: the model, and what the experiment directory's
# name encodes (K, the step size and count, the meta-batch, first order). The iterations and
# data folders may differ (a shortened run, data elsewhere) and the row says how long it ran.
SETTINGS = MODEL_FLAGS + ("update_batch_size", "update_lr", "num_updates", "meta_batch_size",
                          "stop_grad")


@dataclasses.dataclass
class PresetRun:
    """Where a preset's row comes from: ``run_dir`` (None: no run), the recorded
    configuration (None for a run from before records) and notes for the table.

    Example:
        >>> import json, os, tempfile
        >>> from maml_tf.reporting.runs import find_preset_run
        >>> root = tempfile.mkdtemp()
        >>> settings = {"datasource": "sinusoid", "update_lr": 0.01}
        >>> os.makedirs(os.path.join(root, "moved"))   # a run folder renamed after training
        >>> with open(os.path.join(root, "moved", "config.json"), "w") as handle:
        ...     json.dump({"config": settings, "experiment": "sinusoid"}, handle)
        >>> found = find_preset_run(root, "sinusoid", settings, os.path.join(root, "sine"),
        ...                         has_result=lambda run_dir, config: False)
        >>> os.path.basename(found.run_dir), found.config, found.notes
        ('moved', {'datasource': 'sinusoid', 'update_lr': 0.01}, [])
    """

    run_dir: Optional[str]
    config: Optional[dict]
    notes: list


def preset_config(preset, logdir: str, **changes):
    """The :class:`~maml_tf.config.ExperimentConfig` a supervised preset trains (its flags
    that are configuration fields, with ``changes``) in the log folder ``logdir``."""
    from maml_tf.config import ExperimentConfig

    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    values = {k: v for k, v in preset.flags.items() if k in fields}
    return ExperimentConfig(**{**values, **changes, "logdir": logdir})


def recorded_runs(logroot: str) -> list:
    """(run folder, record) of every readable supervised run record under ``logroot``."""
    found = []
    pattern = os.path.join(glob.escape(logroot), "**", RECORD_NAME)
    for path in sorted(glob.glob(pattern, recursive=True)):
        directory = os.path.dirname(path)
        try:
            record = read_record(directory)
        except RunFolderError:
            continue   # not a record this compare can read (another tool's config.json)
        if record is not None and "datasource" in record["config"]:
            found.append((directory, record))
    return found


def contradictions(config: dict, expected: dict, settings: tuple = SETTINGS) -> list:
    """``name: recorded vs preset`` for each of ``settings`` the record contradicts."""
    return [f"{name}={config[name]!r} (preset: {expected[name]!r})" for name in settings
            if name in config and name in expected and not same_value(config[name], expected[name])]


def find_preset_run(logroot: str, name: str, expected: dict, own_dir: str,
                    has_result, records: Optional[list] = None,
                    settings: tuple = SETTINGS) -> PresetRun:
    """The run of preset ``name`` (its resolved configuration ``expected``, its own
    experiment directory ``own_dir``); ``has_result(run_dir, config)`` tells a tested run.
    ``records``: :func:`recorded_runs`' answer, when several presets share one search;
    ``settings``: those a record must agree on (default :data:`SETTINGS`)."""
    records = recorded_runs(logroot) if records is None else records
    notes, candidates = [], []
    own = os.path.normpath(own_dir)
    for directory, record in records:
        named = record.get("experiment")
        wrong = contradictions(record["config"], expected, settings)
        if named == name and wrong:
            notes.append(f"{os.path.join(directory, RECORD_NAME)} names {name} but records "
                         f"{', '.join(wrong)}: not used")
        elif not wrong and (named == name or not named):
            candidates.append((directory, record["config"]))
    if candidates:
        def rank(candidate):
            directory, config = candidate
            trained = checkpoint_iterations(directory)
            return (os.path.normpath(directory) != own, not has_result(directory, config),
                    -(max(trained) if trained else -1), directory)
        directory, config = min(candidates, key=rank)
        return PresetRun(directory, config, notes)
    for directory, record in records:
        if os.path.normpath(directory) == own and record.get("experiment") not in (name, None):
            notes.append(f"{os.path.join(directory, RECORD_NAME)} records preset "
                         f"{record['experiment']}: not used for {name}")
    if os.path.exists(os.path.join(own_dir, RECORD_NAME)):
        return PresetRun(None, None, notes)   # its record names another preset, or contradicts
    return PresetRun(own_dir, None, notes)
