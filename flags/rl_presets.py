"""The RL presets (``python -m rl.main``, paper section 5.3), one set per task.

Per task: MAML with the settings of the checkpoint behind the paper's figure, the baselines
as the released scripts trained them (docs/RL.md "Baselines as released"), the former
pretrained variant, each one's test entry, and the random baseline; plus the per-task
defaults that ``flags/rl.py`` fills in where a flag is left unset, and the released test
scripts' first step sizes.

Why apart from ``flags/experiments.py``: these settings are read against maml_rl's scripts,
the supervised ones against cbfinn/maml's; the registry merges both lists.
"""
from __future__ import annotations

from flags.preset import TEST_SUFFIX, Experiment

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


def rl_presets() -> list:
    """Every RL preset: per task, MAML, the baselines as released, the former pretrained
    variant, their test entries and the random baseline."""
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
