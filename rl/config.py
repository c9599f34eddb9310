"""Plain configuration objects (filled from flags by rl/main.py, or directly by tests)."""
from __future__ import annotations

import dataclasses

from rl.envs.registry import RELEASED_BACKWARD_FRACTION
from rl.maml_trpo import TRPOConfig


@dataclasses.dataclass
class PolicyConfig:
    """The Gaussian MLP policy's shape (rl.policies.GaussianMLPPolicy): maml_rl's two ReLU
    layers of 100 and initial standard deviation 1 by default.

    Example:
        >>> from rl.config import PolicyConfig
        >>> PolicyConfig(hidden_sizes=(8,))
        PolicyConfig(hidden_sizes=(8,), init_std=1.0, dtype='float32', nonlinearity='relu')
    """

    hidden_sizes: tuple = (100, 100)
    init_std: float = 1.0
    dtype: str = "float32"
    nonlinearity: str = "relu"


@dataclasses.dataclass
class TrainConfig:
    """One meta-training run (rl.trainer.Trainer): environment, batch sizes in maml_rl's
    vocabulary, sampling, checkpoints, and the policy and TRPO settings.

    Example:
        >>> from rl.config import PolicyConfig, TrainConfig
        >>> from rl.maml_trpo import TRPOConfig
        >>> cfg = TrainConfig(env_name="cheetah_vel", meta_batch_size=40, fast_batch_size=20,
        ...                   max_path_length=200, policy=PolicyConfig(hidden_sizes=(8,)),
        ...                   trpo=TRPOConfig(fast_lr=0.1))
        >>> cfg.fast_batch_size * cfg.max_path_length       # steps per task (rllab's budget)
        4000
        >>> cfg.trpo.fast_lr, cfg.trpo.step_size, cfg.policy.hidden_sizes
        (0.1, 0.01, (8,))
    """

    env_name: str = "point"
    oracle: bool = False
    meta_batch_size: int = 20
    fast_batch_size: int = 20       # trajectories per task per step (budget: x horizon steps)
    #: "fixed": exactly fast_batch_size paths per task; "per_task" / "total": rllab's budget
    #: of fast_batch_size x max_path_length steps per task / for the whole batch
    #: (rl.samplers.Budget; flags default to the released script's choice per task)
    sampling: str = "fixed"
    sampling_lanes: int = 8         # per_task: paths rolled out at once (rllab n_parallel)
    #: the meta-batch's goals drawn once (from the seed) and kept in every iteration: plain
    #: TRPO on a goal-randomised environment reset without a goal (the released
    #: cluster_trpo_*.py pretrained baselines)
    fixed_goals: bool = False
    #: forward/backward tasks: the share of the goal draws that mean backward (0.5: the
    #: released environments; rl.envs.mujoco_base.DirectionTasks)
    backward_fraction: float = RELEASED_BACKWARD_FRACTION
    #: where returns are fitted and advantages centred: "task" (maml_rl's process_samples,
    #: once per task) or "batch" (rllab's plain TRPO: the whole batch as one list of paths,
    #: rl.episodes.merge_tasks; use_maml=False only)
    advantage_scope: str = "task"
    max_path_length: int = 100
    n_itr: int = 100
    discount: float = 0.99
    gae_lambda: float = 1.0
    seed: int = 1
    logdir: str = "logs/rl/point"
    resume: bool = True             # continue from the newest intact checkpoint, if any
    overwrite: bool = False         # delete an existing run in logdir and start again
    checkpoint_every: int = 1
    checkpoint_minutes: float = 10.0
    num_workers: int = 0
    #: the TRPO meta-step on one device ("none") or split across a MirroredStrategy's
    #: replicas ("mirrored", rl.distribute); num_cpu_devices logical CPU devices without GPU
    distribute: str = "none"
    num_cpu_devices: int = 1
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    trpo: TRPOConfig = dataclasses.field(default_factory=TRPOConfig)


@dataclasses.dataclass
class EvalConfig:
    """Meta-testing (rl.evaluate): fresh goals, ``num_steps`` adaptation steps on
    ``episodes_per_task`` paths each, the first with ``fast_lr``, later ones decayed.

    Example:
        >>> from rl.config import EvalConfig
        >>> from rl.evaluate import step_sizes
        >>> cfg = EvalConfig(env_name="ant_dir", num_tasks=2, max_path_length=200)
        >>> step_sizes(cfg.fast_lr, cfg.num_steps, cfg.lr_decay)    # one per test step
        [0.5, 0.25, 0.25]
    """

    env_name: str = "point"
    oracle: bool = False
    num_tasks: int = 40
    episodes_per_task: int = 40
    max_path_length: int = 100
    num_steps: int = 3
    fast_lr: float = 0.5             # first test step
    lr_decay: float = 0.5            # later steps: fast_lr * lr_decay
    goal_seed: int = 1
    #: forward/backward tasks: the share of the test goal draws that mean backward (0.5: the
    #: released test scripts; 3/7: the goals behind the paper's numbers)
    backward_fraction: float = RELEASED_BACKWARD_FRACTION
    seed: int = 0
    num_workers: int = 0
    method: str = "maml"
    num_trajectories_kept: int = 5   # point robot: paths per task stored for the plot
    #: "fixed": episodes_per_task paths; "per_task": the released test scripts' budget of
    #: episodes_per_task x horizon steps per goal, 4 paths at once (n_parallel=4), paths
    #: in flight completed (rl.samplers.Budget)
    sampling: str = "fixed"
    sampling_lanes: int = 4
    #: --test_init=random: "shared", one initialisation (seed) for every goal, or "per_goal",
    #: goal i starts from the initialisation of seed i (test_maml_cheetah_direc.py and
    #: test_maml_ant_direc.py build the policy per goal under seed=goal_i)
    random_init: str = "shared"
