"""Named experiment presets: every paper configuration and baseline, defined once.

Why: a configuration used to live in run.sh, in ``maml_tf/compare.py`` and in the benchmark
scripts, and changing one copy made the others look in the wrong folder. Now run.sh, the
entry points (``main.py --experiment=NAME``, ``python -m rl.main --experiment=NAME``),
``compare``, the benchmarks, the campaign tool and the plots all read this table.

A preset is the original's flag names with values, plus the log folder run.sh has always used
(under a log root, ``logs`` or run.sh's ``$LOGROOT``). ``NAME_test`` of a supervised preset is
its test entry. Expanding a preset puts its flags *before* the command line's, so any flag
given explicitly wins, exactly as run.sh's "extra flags are passed through (later flags win)".

This module is plain data and needs neither absl nor TensorFlow, so run.sh can ask it cheaply:

    python -m flags.experiments list            # name, what it is, where the paper reports it
    python -m flags.experiments shell NAME      # for run.sh: entry point, iterations env/flag
    python -m flags.experiments args NAME       # the flags a preset expands to
    python -m flags.experiments results ENV [--logroot=DIR]   # RL test results found for ENV
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Optional, Sequence

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


# ---- RL (python -m rl.main), section 5.3 ---------------------------------------------------
RL_ENVS = ("point", "cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir")
# MAML: the settings of the checkpoint the released test script loaded for the paper's figure,
# where they differ from the flag defaults (docs/RL.md)
_RL_RELEASED = {"cheetah_dir": dict(step_size=0.02),      # maml1_fbs20_mbs40_flr_0.1_mlr0.02
                "cheetah_vel": dict(fast_batch_size=10)}  # maml1_fbs10_mbs40_flr_0.1_mlr0.01
#: The baselines as the released scripts trained them (docs/RL.md, "Baselines"), per task:
#: the flags beside use_maml=False. The point robot's pretrained policy came from
#: maml_trpo_point.py with use_maml=False (MAMLNPO swaps in one Adam step per iteration,
#: maml_npo.py lines 31-36); the locomotion ones from cluster_trpo_cheetah.py / _ant.py:
#: plain TRPO, batch_size = 100 paths, on HalfCheetahEnvRand & co. reset without a goal, so
#: each sampler worker keeps the goal it drew first (n_parallel=1 for the cheetah: one goal;
#: 8 for the ant: eight goals, 13 paths each here for the 100 shared ones).
#: The oracles: trpo_point.py (TRPO, 1000 samples, a fresh goal every path) and the same
#: cluster scripts with oracle=True (100 paths, a fresh goal every path: 100 one-path tasks).
#: Plain TRPO processed the batch as one list of paths (advantage_scope="batch": one baseline
#: fit, one centring); the cheetah's pretrained batch has one goal, where both scopes agree.
_RL_PRETRAINED = {
    "point": dict(pretrain_optimizer="adam", n_itr=100),
    # 20 paths at once only for speed: a cheetah path never ends early, so 100 paths either way
    "cheetah_vel": dict(fixed_goals=True, meta_batch_size=1, fast_batch_size=100,
                        sampling="per_task", sampling_lanes=20, n_itr=1000),
    "cheetah_dir": dict(fixed_goals=True, meta_batch_size=1, fast_batch_size=100,
                        sampling="per_task", sampling_lanes=20, n_itr=1000),
    "ant_vel": dict(fixed_goals=True, meta_batch_size=8, fast_batch_size=13,
                    sampling="per_task", sampling_lanes=1, n_itr=2000,
                    advantage_scope="batch"),
    "ant_dir": dict(fixed_goals=True, meta_batch_size=8, fast_batch_size=13,
                    sampling="per_task", sampling_lanes=1, n_itr=2000,
                    advantage_scope="batch"),
}
_RL_ORACLE = {
    "point": dict(meta_batch_size=10, fast_batch_size=1, sampling="total", n_itr=100,
                  advantage_scope="batch"),
    **{env: dict(meta_batch_size=100, fast_batch_size=1, sampling="per_task",
                 sampling_lanes=1, n_itr=1000 if env.startswith("cheetah") else 2000,
                 advantage_scope="batch")
       for env in ("cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir")},
}
_RL_METHODS = {"maml": dict(), "pretrained": dict(use_maml=False),
               "oracle": dict(use_maml=False, oracle=True)}


def task_defaults(env_name: str) -> dict:
    """The paper's / released scripts' per-task settings used when a flag is left unset."""
    from rl.envs.registry import get_spec   # here: the registry stays cheap to import
    spec = get_spec(env_name)
    point = spec.name == "point"
    ant_dir = spec.name == "ant_dir"
    return {
        "fast_lr": 0.5 if point else 0.1,
        "meta_batch_size": 20 if point else 40,
        "fast_batch_size": 40 if ant_dir else 20,
        "max_path_length": spec.horizon,
        "num_workers": 2 if spec.mujoco else 0,
        # maml_trpo_point.py: n_parallel=1 (VectorizedSampler); cluster_maml_trpo_*: 8
        "sampling": "total" if point else "per_task",
        "sampling_lanes": 8,
        "hvp": "exact" if point else "fd",
        "test_sampling": "per_task",   # test_maml_*.py: n_parallel=4, batch_size in steps
        # maml_rl's test_maml_*.py: batch_size 4000 steps (8000 for ant_dir), later steps at
        # 0.5 x the first (0.01 x for ant_dir), goals from np.random.seed(1) (2 for ant_dir)
        "test_num_episodes": (8000 if ant_dir else 4000) // spec.horizon,
        "test_lr_decay": 0.01 if ant_dir else 0.5,
        "test_goal_seed": 2 if ant_dir else 1,
        # random baseline: test_maml_cheetah_direc.py / test_maml_ant_direc.py seed=goal_i
        "test_random_init": "per_goal" if spec.name in ("cheetah_dir", "ant_dir") else "shared",
    }


def test_step_size(env_name: str, method: str, fast_lr: float) -> float:
    """First test step of the released test scripts' ``step_sizes`` lists (maml, pretrain,
    random): MAML adapts with its training fast_lr; the baselines used their own."""
    from rl.envs.registry import get_spec
    name = get_spec(env_name).name
    if method == "oracle":       # evaluated only (the scripts ran it with n_itr=1)
        return 0.0
    if method == "pretrained":
        return {"point": 0.5, "cheetah_vel": 0.02}.get(name, 0.2)
    if method == "random":
        return {"point": 0.5, "cheetah_vel": 0.1}.get(name, 1.0)
    return fast_lr


def _rl() -> list:
    found = []
    for env in RL_ENVS:
        paper = "Fig. 4 (sec. 5.3)" if env == "point" else "Fig. 5 (sec. 5.3)"
        common = dict(env_name=env, seed=1)
        train = dict(common, mode="train", resume=True, n_itr=500)
        if env != "point":    # the FD step maml_rl's optimizer actually passed (docs/RL.md)
            train["fd_base_eps"] = 1.0
        pretrained_what = ("one Adam step (lr 1e-3) per iteration, maml_trpo_point.py with "
                           "use_maml=False" if env == "point" else
                           "plain TRPO, 100 paths per iteration on goals drawn once "
                           "(cluster_trpo_*.py)")
        oracle_what = ("TRPO, 1000 samples per iteration (trpo_point.py)" if env == "point"
                       else "TRPO, 100 paths per iteration, fresh goals (cluster_trpo_*.py)")
        variants = {
            "maml": (f"MAML-TRPO on {env}, 500 meta-iterations ($RL_ITERS), resumes",
                     _RL_RELEASED.get(env, {}), f"rl/{env}_maml"),
            "pretrained": ("baseline as released: " + pretrained_what,
                           _RL_PRETRAINED[env], f"rl/{env}_pretrained"),
            "oracle": ("baseline as released: the goal in the observation, " + oracle_what,
                       _RL_ORACLE[env], f"rl/{env}_oracle"),
        }
        for method, (what, released, folder) in variants.items():
            name = f"rl_{env}" + ("" if method == "maml" else f"_{method}")
            extra = _RL_METHODS[method]
            found.append(Experiment(
                name, "rl", what, paper, folder, dict(train, **released, **extra),
                method=method, iterations=("RL_ITERS", "n_itr")))
            found.append(Experiment(
                f"{name}{TEST_SUFFIX}", "rl",
                f"test protocol (40 goals, 3 steps) of {name}'s best iteration", paper,
                folder, dict(common, mode="test", **extra), method=method))
        # The project's former pretrained baseline, kept: TRPO on the whole meta-batch with
        # fresh goals every iteration, the paper's "pretrained on all tasks" read literally.
        name, folder = f"rl_{env}_pretrained_multitask", f"rl/{env}_pretrained_multitask"
        found.append(Experiment(
            name, "rl", "baseline variant: TRPO on the MAML meta-batch (fresh goals each "
            "iteration), not how the released scripts trained it", paper, folder,
            dict(train, use_maml=False), method="pretrained", iterations=("RL_ITERS", "n_itr")))
        found.append(Experiment(
            f"{name}{TEST_SUFFIX}", "rl", f"test protocol of {name}'s best iteration", paper,
            folder, dict(common, mode="test", use_maml=False), method="pretrained"))
        found.append(Experiment(
            f"rl_{env}_random", "rl", "baseline: test protocol from a random initialisation"
            + (" per goal (seed = goal index)" if env in ("cheetah_dir", "ant_dir") else ""),
            paper, f"rl/{env}_random", dict(common, mode="test", test_init="random"),
            method="random"))
    return found


EXPERIMENTS = {e.name: e for e in _supervised() + _rl()}

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
