"""What a named experiment preset is: the record the registry (``flags/experiments.py``) holds.

Why a module of its own: the supervised presets (``flags/experiments.py``) and the RL ones
(``flags/rl_presets.py``) both build these records, and the registry merges the two lists.
Plain data, like the registry: neither absl nor TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

ENTRY_POINTS = {"supervised": "main.py", "import": "import_tf1_checkpoint.py",
                "rl": "python -m rl.main"}
TEST_SUFFIX = "_test"
SINUSOID_KS = (5, 10, 20)   # the K of the sinusoid test entries (test_steps follow this order)
DEFAULT_LOGROOT = "logs"
ORIGINAL_UPDATE_LR = 0.001   # the original's --update_lr default


class UnknownExperiment(ValueError):
    """A preset name that is not in the registry (the message lists the known names)."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One named preset.

    ``flags`` are the original's flag names and values the run trains (or, for RL test
    presets, tests) with; ``test_flags`` are added for a supervised preset's ``NAME_test``.
    ``test_steps``: the sinusoid fine-tuning step at K = 5, 10, 20 that the test entry uses
    unless ``--update_lr`` is given. ``paper_key`` points into docs/paper_numbers.json.
    ``iterations``: (environment variable of run.sh, flag) that shortens a training run.

    Example:
        >>> from flags.preset import Experiment
        >>> preset = Experiment(name="sine", kind="supervised", what="sinusoid, MAML",
        ...                     paper="Table 2", folder="sine",
        ...                     flags={"datasource": "sinusoid", "norm": "None"},
        ...                     test_steps=(0.01, 0.02, 0.02))    # at K = 5, 10, 20
        >>> preset.logdir("logs"), preset.test_step(20), preset.test_step(7)
        ('logs/sine/', 0.02, 0.02)
    """

    name: str
    kind: str                      # "supervised", "import" or "rl"
    what: str                      # one line for ./run.sh list
    paper: str                     # where the paper reports it
    folder: str                    # log folder under the log root
    flags: dict
    test_flags: dict = dataclasses.field(default_factory=dict)
    label: str = ""                # row label in compare's tables
    method: str = ""               # maml, pretrained, oracle, random
    paper_key: Optional[tuple] = None
    test_steps: Optional[tuple] = None
    iterations: Optional[tuple] = None
    import_flags: dict = dataclasses.field(default_factory=dict)

    @property
    def trailing_slash(self) -> bool:
        """run.sh's supervised --logdir values end in '/', the RL ones do not."""
        return self.kind != "rl"

    def logdir(self, logroot: str = DEFAULT_LOGROOT) -> str:
        path = f"{logroot.rstrip('/')}/{self.folder}"
        return path + "/" if self.trailing_slash else path

    def test_step(self, k: int) -> Optional[float]:
        """The sinusoid test entry's step size for K (K=10's for any other K), or None."""
        if not self.test_steps:
            return None
        return self.test_steps[SINUSOID_KS.index(k)] if k in SINUSOID_KS else self.test_steps[1]
