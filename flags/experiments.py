"""Named experiment presets: every paper configuration and baseline, defined once.

Why: a configuration used to live in run.sh, in ``maml_tf/compare.py`` and in the benchmark
scripts, and changing one copy made the others look in the wrong folder. Now run.sh, the
entry points (``main.py --experiment=NAME``, ``python -m rl.main --experiment=NAME``),
``compare``, the benchmarks, the campaign tool and the plots all read this table.

A preset is the original's flag names with values, plus the log folder run.sh has always used
(under a log root, ``logs`` or run.sh's ``$LOGROOT``). ``NAME_test`` of a supervised preset is
its test entry. Expanding a preset puts its flags *before* the command line's, so any flag
given explicitly wins, exactly as run.sh's "extra flags are passed through (later flags win)".

The supervised presets are defined here, the RL ones in ``flags/rl_presets.py``, and the
record both build in ``flags/preset.py``; this module merges them and expands names.
It is plain data and needs neither absl nor TensorFlow, so run.sh can ask it cheaply:

    python -m flags.experiments list            # name, what it is, where the paper reports it
    python -m flags.experiments shell NAME      # for run.sh: entry point, iterations env/flag
    python -m flags.experiments args NAME       # the flags a preset expands to
    python -m flags.experiments results ENV [--logroot=DIR]   # RL test results found for ENV
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from flags.preset import (DEFAULT_LOGROOT, ENTRY_POINTS, ORIGINAL_UPDATE_LR,  # noqa: F401
                          SINUSOID_KS, TEST_SUFFIX, Experiment, UnknownExperiment)
# the RL presets and per-task defaults, also reachable from here as before
from flags.rl_presets import RL_ENVS, rl_presets, task_defaults, test_step_size  # noqa: F401


# ---- supervised (main.py) ----------------------------------------------------------------
_SINE = dict(datasource="sinusoid", norm="None", update_batch_size=10)
_SINE_MAML = dict(_SINE, metatrain_iterations=70000, update_lr=0.01)
_SINE_PRE = dict(_SINE, pretrain_iterations=70000, metatrain_iterations=0, update_lr=0.01)
_SINE_TEST = dict(train=False, train_update_batch_size=10)
_SINE_PAPER = "Fig. 2-3, Table 2 (sec. 5.1)"
_OMNI = dict(datasource="omniglot", omniglot_folder="./data/omniglot_resized",
             metatrain_iterations=60000)
_MINI = dict(datasource="miniimagenet", miniimagenet_folder="./data/miniImagenet",
             metatrain_iterations=60000, update_lr=0.01, num_updates=5, num_classes=5,
             num_filters=32, max_pool=True)
_TABLE1_TEST = dict(train=False, test_set=True)
AUTHORS_CHECKPOINT = "../shared/reference/authors_checkpoint/miniimagenet1shot/model59000"


def _supervised() -> list:
    sine_iters = ("SINE_ITERS", "metatrain_iterations")
    sine_pre_iters = ("SINE_ITERS", "pretrain_iterations")
    found = [
        Experiment("sinusoid", "supervised", "10-shot sinusoid MAML, alpha 0.01 (paper's text)",
                   _SINE_PAPER, "sine", _SINE_MAML, _SINE_TEST,
                   label="MAML, alpha 0.01 (paper's text)", method="maml",
                   test_steps=(0.01,) * 3, iterations=sine_iters),
        Experiment("sinusoid_lr0.001", "supervised",
                   "the original usage line verbatim (alpha 0.001)", _SINE_PAPER,
                   "sine_lr0.001", dict(_SINE, metatrain_iterations=70000), _SINE_TEST,
                   label="MAML, alpha 0.001 (released code)", method="maml",
                   test_steps=(0.001,) * 3, iterations=sine_iters),
        Experiment("sinusoid_pretrained", "supervised",
                   "baseline: pretrained on all tasks (Adam on the support loss); test "
                   "fine-tunes with the paper's Fig. 6 step, 0.01 if K=5 else 0.02",
                   "Fig. 2-3, Table 2, Fig. 6", "sine_pretrained", _SINE_PRE,
                   dict(_SINE_TEST, train_update_lr=0.01), label="pretrained, fine-tuned",
                   method="pretrained", test_steps=(0.01, 0.02, 0.02),
                   iterations=sine_pre_iters),
        Experiment("sinusoid_oracle", "supervised",
                   "baseline: oracle (amplitude and phase as inputs)", "Fig. 3",
                   "sine_oracle", dict(_SINE_PRE, baseline="oracle"), _SINE_TEST,
                   label="oracle (not fine-tuned)", method="oracle", test_steps=(0.01,) * 3,
                   iterations=sine_pre_iters),
    ]
    omniglot = []
    for ways, mbs, lr, steps in ((5, 32, 0.4, 1), (20, 16, 0.1, 5)):
        for k in (1, 5):
            flags = dict(_OMNI, meta_batch_size=mbs, update_batch_size=k,
                         **({"num_classes": ways} if ways != 5 else {}), update_lr=lr,
                         num_updates=steps)
            label = f"Omniglot {ways}-way {k}-shot"
            omniglot.append(Experiment(
                f"omniglot_{ways}way_{k}shot", "supervised", label, "Table 1",
                f"omniglot{ways}way", flags, _TABLE1_TEST, label=label, method="maml",
                paper_key=("omniglot", "maml_conv", f"{ways}way_{k}shot")))
    for k in (1, 5):
        label = f"Omniglot 5-way {k}-shot, no conv"
        omniglot.append(Experiment(
            f"omniglot_noconv_5way_{k}shot", "supervised",
            f"Omniglot 5-way {k}-shot, fully connected (--conv=False)", "Table 1",
            "omniglot5way_noconv", dict(omniglot[k // 5].flags, conv=False), _TABLE1_TEST,
            label=label, method="maml", paper_key=("omniglot", "maml_no_conv", f"5way_{k}shot")))
    mini = []
    for first_order in (False, True):
        for k in (1, 5):
            label = f"MiniImagenet 5-way {k}-shot" + (", first order" if first_order else "")
            what = label + (" (meta-batch 4 as the code; paper: 2)" if k == 5 else "")
            flags = dict(_MINI, meta_batch_size=4, update_batch_size=k)
            if first_order:
                flags["stop_grad"] = True
            mini.append(Experiment(
                f"miniimagenet_{k}shot" + ("_fo" if first_order else ""), "supervised",
                what.replace(", first order", ", first-order (--stop_grad)"), "Table 1",
                f"miniimagenet{k}shot", flags, _TABLE1_TEST, label=label, method="maml",
                paper_key=("miniimagenet", "maml_first_order" if first_order else "maml",
                           f"5way_{k}shot")))
    authors = Experiment(
        "miniimagenet_1shot_authors", "import",
        "import the authors' released 1-shot checkpoint ($AUTHORS_CKPT); its _test tests it",
        "Table 1", "miniimagenet1shot_authors", mini[0].flags, _TABLE1_TEST,
        label="MiniImagenet 5-way 1-shot, the authors' checkpoint", method="maml",
        paper_key=("miniimagenet", "maml", "5way_1shot"),
        import_flags=dict(tf1_checkpoint=AUTHORS_CHECKPOINT))
    return found + omniglot + mini + [authors]


EXPERIMENTS = {e.name: e for e in _supervised() + rl_presets()}

# rl_ENV_compare's row order (the former run.sh loop's): variants of a method follow it
_RL_COMPARE_ORDER = ("maml", "pretrained", "random", "oracle")


def rl_result_file(logdir: str, method: str) -> str:
    """Where ``python -m rl.main --mode=test`` writes a method's result (without
    --test_results): the one name rl/main.py writes and rl_ENV_compare looks for."""
    return os.path.join(logdir, f"test_{method}.pkl")


def rl_test_presets(env: str) -> list:
    """The registry's RL presets that run the test protocol on ``env`` (every method and
    variant), in compare's order: maml, pretrained (and its variants), random, oracle."""
    found = [e for e in EXPERIMENTS.values() if e.kind == "rl"
             and e.flags.get("env_name") == env and e.flags.get("mode") == "test"]
    rank = {method: i for i, method in enumerate(_RL_COMPARE_ORDER)}
    return sorted(found, key=lambda e: rank.get(e.method, len(rank)))


def rl_results(env: str, logroot: str = DEFAULT_LOGROOT) -> list:
    """The result files of ``env``'s test presets that exist under ``logroot``."""
    paths = []
    for preset in rl_test_presets(env):
        path = rl_result_file(preset.logdir(logroot), preset.method)
        if os.path.isfile(path) and path not in paths:
            paths.append(path)
    return paths


# ---- lookup and expansion ----------------------------------------------------------------
def names() -> list:
    """Every name a command line accepts: the presets and the supervised NAME_test entries."""
    found = []
    for experiment in EXPERIMENTS.values():
        found.append(experiment.name)
        if experiment.kind != "rl":
            found.append(experiment.name + TEST_SUFFIX)
    return found


def lookup(name: str) -> tuple:
    """(preset, is_test_entry) for ``name``; UnknownExperiment lists the names otherwise."""
    if name in EXPERIMENTS:
        return EXPERIMENTS[name], False
    base = name[:-len(TEST_SUFFIX)] if name.endswith(TEST_SUFFIX) else None
    if base in EXPERIMENTS and EXPERIMENTS[base].kind != "rl":
        return EXPERIMENTS[base], True
    raise UnknownExperiment(f"unknown experiment {name!r}; known: {', '.join(names())}")


def entry_kind(name: str) -> str:
    """Which entry point runs ``name``: a supervised preset's test and the imported
    checkpoint's test run in main.py."""
    experiment, test = lookup(name)
    return "supervised" if test else experiment.kind


def resolved_flags(name: str, overrides: Optional[dict] = None,
                   logroot: str = DEFAULT_LOGROOT) -> dict:
    """The flag values ``name`` stands for, then ``overrides`` (explicit flags win)."""
    experiment, test = lookup(name)
    values = dict(experiment.flags)
    if test:
        values.update(experiment.test_flags)
    elif experiment.kind == "import":
        values.update(experiment.import_flags)
    values["logdir"] = experiment.logdir(logroot)
    overrides = dict(overrides or {})
    if test and experiment.test_steps and "update_lr" not in overrides:
        k = int(overrides.get("update_batch_size", values["update_batch_size"]))
        _set_test_step(values, experiment.test_step(k))
    values.update(overrides)
    return values


def _set_test_step(values: dict, step: float) -> None:
    """The test entry's step size, written only where it differs from the training one (so
    the flags stay the ones run.sh always passed)."""
    if step != values.get("update_lr", ORIGINAL_UPDATE_LR):
        values["update_lr"] = step


def preset_args(name: str, command_line: Sequence[str] = (),
                logroot: Optional[str] = None) -> list:
    """``--flag=value`` arguments of ``name``, to be put *before* ``command_line``.

    Two values are read from the command line because they choose among a preset's values:
    ``--logroot`` (where its log folder is) and ``--update_batch_size`` (the sinusoid test
    entries' step size depends on K). A flag on the command line still wins, coming later.
    """
    experiment, test = lookup(name)
    root = logroot or last_value(command_line, "logroot") or DEFAULT_LOGROOT
    values = resolved_flags(name, {}, root)
    k = last_value(command_line, "update_batch_size")
    if test and experiment.test_steps and k is not None and k.isdigit():
        _set_test_step(values, experiment.test_step(int(k)))
    return [f"--{key}={value}" for key, value in values.items()]


def last_value(command_line: Sequence[str], flag: str) -> Optional[str]:
    """The last value given for ``--flag`` (``--flag=v`` or ``--flag v``), or None."""
    found = None
    args = list(command_line)
    for i, arg in enumerate(args):
        for prefix in (f"--{flag}", f"-{flag}"):
            if arg.startswith(prefix + "="):
                found = arg[len(prefix) + 1:]
            elif arg == prefix and i + 1 < len(args):
                found = args[i + 1]
    return found


def expand_argv(argv: Sequence[str], kinds: Sequence[str]) -> list:
    """``argv`` with the flags of its ``--experiment`` preset inserted before the user's.

    Raises UnknownExperiment for an unknown name and ValueError for a preset that another
    entry point runs (naming that entry point).
    """
    name = last_value(argv[1:], "experiment")
    if not name:
        return list(argv)
    kind = entry_kind(name)
    if kind not in kinds:
        raise ValueError(f"--experiment={name} is run by {ENTRY_POINTS[kind]}, not by this "
                         f"entry point")
    return [argv[0]] + preset_args(name, argv[1:]) + list(argv[1:])


def listing() -> str:
    """The table ``./run.sh list`` prints: name, what it is, where the paper reports it."""
    rows = []
    for experiment in EXPERIMENTS.values():
        rows.append((experiment.name, experiment.what, experiment.paper))
        if experiment.kind != "rl":
            what = ("its test with K = $1 (5, 10 or 20; default 10)"
                    if experiment.test_steps else "its test (600 test-set tasks)")
            rows.append((experiment.name + TEST_SUFFIX, what, experiment.paper))
    width = max(len(r[0]) for r in rows)
    paper_width = max(len(r[2]) for r in rows)
    return "\n".join(f"{n:<{width}}  {p:<{paper_width}}  {w}" for n, w, p in rows)


def shell_info(name: str) -> str:
    """One line for run.sh: the entry point kind, then the iterations env var and flag (or
    '-'), then whether K may be given positionally (supervised test entries)."""
    experiment, test = lookup(name)
    env, flag = experiment.iterations if experiment.iterations and not test else ("-", "-")
    return f"{entry_kind(name)} {env} {flag} {'k' if test else '-'}"


def main(argv: Sequence[str]) -> int:
    usage = ("usage: python -m flags.experiments list | shell NAME | args NAME [flags...] | "
             "results ENV [--logroot=DIR]")
    if len(argv) < 2 or argv[1] not in ("list", "shell", "args", "results"):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[1] == "list":
            print(listing())
        elif len(argv) < 3:
            print(usage, file=sys.stderr)
            return 2
        elif argv[1] == "shell":
            print(shell_info(argv[2]))
        elif argv[1] == "results":
            if argv[2] not in RL_ENVS:
                raise UnknownExperiment(f"unknown RL environment {argv[2]!r}; known: "
                                        f"{', '.join(RL_ENVS)}")
            logroot = last_value(argv[3:], "logroot") or DEFAULT_LOGROOT
            for path in rl_results(argv[2], logroot):
                print(path)
        else:
            print(" ".join(preset_args(argv[2], argv[3:])))
    except UnknownExperiment as error:
        print(f"run.sh: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
