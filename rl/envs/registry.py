"""Environment names, their horizons and paper keys, and constructors.

Names are checked here, before any TensorFlow or MuJoCo work, so a typo gives one clear line
(``UnknownEnvError``) rather than a traceback from deep inside a run.
"""
from __future__ import annotations

import dataclasses
import importlib

from rl.envs.base import SerialVectorEnv, TaskEnv, VectorTaskEnv


class UnknownEnvError(ValueError):
    """An environment name that is not registered."""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """One registered task distribution: its constructor, horizon and paper key.

    Example:
        >>> from rl.envs.registry import get_spec
        >>> spec = get_spec("HalfCheetahEnvRandDirec")     # maml_rl's name, or "cheetah_dir"
        >>> spec.name, spec.entry_point, spec.horizon, spec.direction
        ('cheetah_dir', 'rl.envs.half_cheetah:HalfCheetahDirEnv', 200, True)
    """

    name: str
    entry_point: str          # "module:Class"
    horizon: int              # max_path_length of the paper's experiments
    paper_key: str            # key in paper_numbers.json["rl_average_return"]
    description: str
    mujoco: bool = True
    direction: bool = False   # forward/backward tasks (rl.envs.mujoco_base.DirectionTasks)


ENV_SPECS = {
    spec.name: spec for spec in [
        EnvSpec("point", "rl.envs.point:PointEnv", 100, "point_2d_navigation",
                "2D point robot, goal position in [-0.5, 0.5]^2", mujoco=False),
        EnvSpec("cheetah_vel", "rl.envs.half_cheetah:HalfCheetahVelEnv", 200,
                "half_cheetah_goal_velocity", "half-cheetah, goal velocity U[0, 2]"),
        EnvSpec("cheetah_dir", "rl.envs.half_cheetah:HalfCheetahDirEnv", 200,
                "half_cheetah_forward_backward", "half-cheetah, forward or backward",
                direction=True),
        EnvSpec("ant_vel", "rl.envs.ant:AntVelEnv", 200, "ant_goal_velocity",
                "ant, goal velocity U[0, 3]"),
        EnvSpec("ant_dir", "rl.envs.ant:AntDirEnv", 200, "ant_forward_backward",
                "ant, forward or backward", direction=True),
    ]
}

#: The class names of the original maml_rl environments, accepted as aliases.
ALIASES = {
    "PointEnvRandGoal": "point",
    "HalfCheetahEnvRand": "cheetah_vel",
    "HalfCheetahEnvRandDirec": "cheetah_dir",
    "AntEnvRand": "ant_vel",
    "AntEnvRandDirec": "ant_dir",
}


def get_spec(name: str) -> EnvSpec:
    """The spec of ``name`` (or of its maml_rl alias); UnknownEnvError otherwise."""
    canonical = ALIASES.get(name, name)
    if canonical not in ENV_SPECS:
        raise UnknownEnvError(
            f"unknown environment {name!r}; choose one of {sorted(ENV_SPECS)} "
            f"(or the maml_rl names {sorted(ALIASES)})")
    return ENV_SPECS[canonical]


#: The released maml_rl direction environments: half of the draws mean backward.
RELEASED_BACKWARD_FRACTION = 0.5


def sample_tasks(env: TaskEnv, num_tasks: int, rng, backward_fraction: float =
                 RELEASED_BACKWARD_FRACTION) -> list:
    """``env.sample_tasks(num_tasks, rng)``, with the share of the draws that mean backward
    for a forward/backward task (``DirectionTasks``); ValueError if another share is asked
    of a task without directions."""
    from rl.envs.mujoco_base import DirectionTasks
    if isinstance(env, DirectionTasks):
        return env.sample_tasks(num_tasks, rng, backward_fraction)
    if backward_fraction != RELEASED_BACKWARD_FRACTION:
        raise ValueError(f"a backward fraction ({backward_fraction}) applies to the "
                         f"forward/backward tasks only, not to {type(env).__name__}")
    return env.sample_tasks(num_tasks, rng)


def make_env(name: str, oracle: bool = False) -> TaskEnv:
    """One single (Gymnasium) environment of the task distribution ``name``."""
    module_name, class_name = get_spec(name).entry_point.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(oracle=oracle)


def make_vector_env(name: str, num_envs: int, oracle: bool = False,
                    num_workers: int = 0) -> VectorTaskEnv:
    """``num_envs`` environments stepped together.

    The point robot is vectorised in numpy (one op per step for the whole batch). MuJoCo tasks
    run as a serial loop in-process (``num_workers=0``) or split over ``num_workers`` worker
    processes (``rl.envs.workers.ProcessVectorEnv``).
    """
    spec = get_spec(name)
    if not spec.mujoco:
        from rl.envs.point import VectorPointEnv
        return VectorPointEnv(num_envs, oracle=oracle)
    if num_workers > 0:
        from rl.envs.workers import ProcessVectorEnv
        return ProcessVectorEnv(spec.name, num_envs, oracle=oracle, num_workers=num_workers)
    return SerialVectorEnv([make_env(spec.name, oracle) for _ in range(num_envs)])
