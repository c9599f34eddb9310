"""Flags of ``python -m rl.main`` (MAML-TRPO, section 5.3).

Names follow cbfinn/maml_rl where it had them (fast_lr, meta_batch_size, fast_batch_size,
max_path_length, num_grad_updates, n_itr, use_maml, step_size, discount, gae_lambda).
Defaults that depend on the task (left unset here) come from ``task_defaults``: the point
robot uses the released script's fast_lr 0.5 and the paper's meta-batch 20, locomotion fast_lr
0.1 and meta-batch 40. Validators run before anything is built, so a bad value is one clear
message. Only rl/main.py imports this module.
"""
from __future__ import annotations

import math
import os
import tempfile

from absl import flags

from flags import common, experiments

from rl.envs.registry import (ALIASES, ENV_SPECS, RELEASED_BACKWARD_FRACTION, UnknownEnvError,
                              get_spec)

FLAGS = flags.FLAGS

# ---- task ------------------------------------------------------------------------------
flags.DEFINE_string("env_name", "point",
                    f"task distribution: one of {sorted(ENV_SPECS)} (or the maml_rl class "
                    f"names {sorted(ALIASES)})")
flags.DEFINE_alias("task", "env_name")
flags.DEFINE_boolean("oracle", False, "oracle baseline: the task (goal) is appended to the "
                                      "observation")
# ---- maml_rl's hyperparameters ---------------------------------------------------------
flags.DEFINE_float("fast_lr", None, "inner (and test) step size alpha; default 0.5 for the "
                                    "point robot (released script), 0.1 for locomotion")
flags.DEFINE_integer("meta_batch_size", None, "tasks per meta-iteration; default 20 (point), "
                                              "40 (locomotion)")
flags.DEFINE_integer("fast_batch_size", None, "trajectories per task per step; default 20 "
                                              "(40 for ant_dir)")
flags.DEFINE_integer("max_path_length", None, "horizon; default 100 (point), 200 (locomotion)")
flags.DEFINE_enum("sampling", None, ["fixed", "per_task", "total"],
                  "trajectories per task and batch: 'fixed' exactly --fast_batch_size; "
                  "'per_task' a budget of fast_batch_size x max_path_length steps per task, "
                  "--sampling_lanes paths at once, the last ones completed (rllab's parallel "
                  "sampler, the released locomotion scripts); 'total' one budget for the "
                  "whole meta-batch, one path per task at a time, unfinished paths dropped "
                  "(maml_rl's VectorizedSampler: the released point script, and every run behind "
                  "the paper, which predates the parallel sampler). Default: the released "
                  "script's (total for point, per_task for locomotion)")
flags.DEFINE_integer("sampling_lanes", None, "--sampling=per_task: paths rolled out at once "
                     "per task (rllab's n_parallel workers); default 8 as the released "
                     "locomotion scripts")
flags.DEFINE_integer("num_grad_updates", 1, "inner policy-gradient steps during meta-training")
flags.DEFINE_integer("n_itr", 100, "meta-iterations (the paper ran up to 500)")
flags.DEFINE_boolean("use_maml", True, "False: the pretrained baseline (TRPO on all tasks, "
                                       "no inner step)")
flags.DEFINE_enum("pretrain_optimizer", "trpo", ["trpo", "adam"],
                  "--use_maml=False: how the baseline is trained. 'trpo' plain TRPO (the "
                  "released cluster_trpo_*.py and trpo_point.py baselines); 'adam' one "
                  "full-batch Adam step per iteration on the policy-gradient surrogate "
                  "(maml_trpo_point.py with use_maml=False: MAMLNPO swaps in "
                  "FirstOrderOptimizer, Adam lr 1e-3)")
flags.DEFINE_float("pretrain_lr", 1e-3, "--pretrain_optimizer=adam: Adam's learning rate "
                   "(FirstOrderOptimizer's default 1e-3)")
flags.DEFINE_boolean("fixed_goals", False, "draw the meta-batch's goals once (from --seed) "
                     "and keep them in every iteration, as plain TRPO on maml_rl's "
                     "goal-randomised environments did (reset without a goal keeps the "
                     "first one drawn); default: fresh goals every iteration")
flags.DEFINE_float("backward_fraction", RELEASED_BACKWARD_FRACTION,
                   "forward/backward tasks (cheetah_dir, ant_dir): the share of the "
                   "meta-batch's goal draws that mean backward. 0.5 as the "
                   "released environments; the code committed the day the paper's numbers "
                   "were written (maml_rl 4d41869) had 0.2 for cheetah_dir and 2/15 for "
                   "ant_dir (RL.md)")
flags.DEFINE_enum("advantage_scope", "task", ["task", "batch"],
                  "where the linear baseline is fitted and advantages centred: 'task' once "
                  "per task (maml_rl's MAML), 'batch' over every path of the batch at once "
                  "(rllab's plain TRPO: the released oracle and pretrained baselines); "
                  "'batch' only with --use_maml=False")
flags.DEFINE_float("step_size", 0.01, "TRPO's bound on the mean KL divergence")
flags.DEFINE_float("discount", 0.99, "discount factor")
flags.DEFINE_float("gae_lambda", 1.0, "GAE lambda (1.0: Monte-Carlo returns minus baseline)")
# ---- TRPO details ----------------------------------------------------------------------
flags.DEFINE_enum("hvp", None, ["fd", "exact"], "Hessian-vector product of the KL: 'fd' "
                  "symmetric finite differences (the original), 'exact' double backprop. "
                  "Default: exact for the point robot, where neither FD step is a usable "
                  "product in float32 (docs/RL.md, 'The finite-difference step'), fd for "
                  "locomotion")
flags.DEFINE_float("fd_base_eps", 1.0, "finite-difference HVP step (--hvp=fd): eps = "
                   "fd_base_eps / (||theta|| + 1e-8), applied to the unnormalised CG vector. "
                   "1.0 is what the released maml_rl optimizer passed "
                   "(FiniteDifferenceHvp(num_slices)); the documented 1e-8 rounds away in "
                   "float32 and gives a zero or noise product (measured: docs/RL.md, 'The "
                   "finite-difference step')")
flags.DEFINE_integer("cg_iters", 10, "conjugate-gradient iterations")
flags.DEFINE_float("cg_damping", 1e-5, "damping (reg_coeff) added to the KL Hessian")
flags.DEFINE_float("backtrack_ratio", 0.8, "line-search shrink factor")
flags.DEFINE_integer("max_backtracks", 15, "line-search steps before the step is rejected")
# ---- policy ----------------------------------------------------------------------------
flags.DEFINE_list("hidden_sizes", ["100", "100"], "hidden layer widths")
flags.DEFINE_float("init_std", 1.0, "initial policy standard deviation")
flags.DEFINE_enum("hidden_nonlinearity", None, ["relu", "tanh"],
                  "hidden-layer nonlinearity; default relu as maml_rl's policies, except tanh "
                  "for the point robot's random baseline (--test_init=random), whose released "
                  "test script kept rllab's default")
flags.DEFINE_enum("dtype", "float32", ["float32", "float64"],
                  "policy precision. float32 as the original; float64 lets a tiny "
                  "--fd_base_eps (e.g. the documented 1e-8) give an accurate product, but is "
                  "~10x slower (docs/RL.md)")
# ---- run -------------------------------------------------------------------------------
flags.DEFINE_enum("mode", "train", ["train", "test", "train_and_test", "export"],
                  "train, run the test protocol, both, or only export (--export_dir)")
flags.DEFINE_string("export_dir", "", "also write the policy of --test_checkpoint in --logdir "
                    "as a SavedModel here (signatures act, adapt_and_act; docs/RL.md)")
flags.DEFINE_integer("seed", 1, "random seed (tasks, rollouts, initialisation)")
flags.DEFINE_string("logdir", "logs/rl/point", "checkpoints, TensorBoard summaries, progress.csv")
flags.DEFINE_boolean("resume", True, "continue from the newest intact checkpoint in --logdir "
                     "(a finished run prints that it is complete); --resume=False over an "
                     "existing run is refused unless --overwrite")
flags.DEFINE_boolean("overwrite", False, "delete the run already in --logdir (checkpoints, "
                     "best policy, progress.csv, summaries, test results) and start again")
flags.DEFINE_integer("checkpoint_every", 1, "save a checkpoint every this many iterations")
flags.DEFINE_float("checkpoint_minutes", 10.0, "also save when this many minutes have passed "
                   "since the last save (0: every iteration)")
flags.DEFINE_enum("distribute", "none", ["none", "mirrored", "multi_worker"],
                  "the TRPO meta-step on several devices with tf.distribute: none (one "
                  "device) or mirrored (every local GPU, or --num_cpu_devices logical CPU "
                  "devices); the meta-batch's tasks are split into equal shares and the step "
                  "is the one-device step (docs/RL.md). Training only; multi_worker is not "
                  "supported for RL")
flags.DEFINE_integer("num_cpu_devices", 1, "--distribute=mirrored on a host without GPU: "
                     "logical CPU devices (replicas) to split the meta-batch's tasks across")
flags.DEFINE_integer("num_workers", None, "sampler worker processes for MuJoCo tasks (0: in "
                                          "process); default 2 for MuJoCo, 0 for the point")
# ---- test protocol ---------------------------------------------------------------------
flags.DEFINE_string("test_checkpoint", "best", "'best', 'latest' or an iteration number")
flags.DEFINE_enum("test_init", "checkpoint", ["checkpoint", "random"],
                  "start the test from a checkpoint or from a random initialisation "
                  "(the random baseline; uses --seed)")
flags.DEFINE_enum("test_random_init", None, ["shared", "per_goal"],
                  "--test_init=random: 'shared' one initialisation (--seed) for every goal, "
                  "or 'per_goal' goal i from a fresh initialisation of seed i. Default as the "
                  "released test scripts: per_goal for cheetah_dir and ant_dir (seed=goal_i), "
                  "shared otherwise")
flags.DEFINE_integer("test_num_tasks", 40, "test tasks")
flags.DEFINE_integer("test_num_episodes", None, "trajectories per task and step at test time; "
                     "default as the released test scripts: 40 (point), 20 (locomotion), "
                     "40 (ant_dir)")
flags.DEFINE_enum("test_sampling", None, ["fixed", "per_task"],
                  "test-time trajectories: 'per_task' (default, the released test scripts: "
                  "a budget of test_num_episodes x max_path_length steps per goal, 4 paths at "
                  "once, the last ones completed, so paths that end early leave room for "
                  "more) or 'fixed' (exactly --test_num_episodes paths per goal)")
flags.DEFINE_integer("test_num_steps", 3, "policy-gradient steps at test time")
flags.DEFINE_float("test_fast_lr", None, "first test step size; default as the released test "
                   "scripts: MAML --fast_lr; pretrained 0.5 (point), 0.02 (cheetah_vel), 0.2 "
                   "(others); random 0.5 (point), 0.1 (cheetah_vel), 1.0 (others); oracle 0")
flags.DEFINE_float("test_lr_decay", None, "later test steps use test_fast_lr * this; default "
                   "0.5 (0.01 for ant_dir, as its released test script)")
flags.DEFINE_float("test_backward_fraction", RELEASED_BACKWARD_FRACTION,
                   "forward/backward tasks: the share of the test goal draws that mean "
                   "backward. 0.5 as the released test scripts "
                   "(ant_dir: 25 of 40 goals backward); 3/7 (0.428571) the goals behind the "
                   "paper's numbers (ant_dir: 20 of 40; cheetah_dir: the same 22 either way)")
flags.DEFINE_integer("test_goal_seed", None, "numpy seed of the test goals; default 1 (2 for "
                     "ant_dir, as its released test script)")
flags.DEFINE_string("test_results", None, "output pickle (a CSV is written beside it); "
                                          "default <logdir>/test_<method>.pkl")
flags.DEFINE_string("method_name", None, "label in the results: default maml, pretrained, "
                                         "oracle or random from the other flags")


def _valid_env(name):
    try:
        get_spec(name)
    except UnknownEnvError as error:
        raise flags.ValidationError(str(error))
    return True


flags.register_validator("env_name", _valid_env)
for _name in ("meta_batch_size", "fast_batch_size", "max_path_length"):
    flags.register_validator(_name, lambda v: v is None or v >= 1,
                             message=f"--{_name} must be a positive integer")
flags.register_validator("test_num_episodes", lambda v: v is None or v >= 1,
                         message="--test_num_episodes must be a positive integer")
flags.register_validator("test_fast_lr", lambda v: v is None or (math.isfinite(v) and v >= 0),
                         message="--test_fast_lr must be >= 0 and finite")
flags.register_validator("test_lr_decay", lambda v: v is None or (math.isfinite(v) and v >= 0),
                         message="--test_lr_decay must be >= 0 and finite")
for _name in ("n_itr", "cg_iters", "max_backtracks", "checkpoint_every", "test_num_tasks"):
    flags.register_validator(_name, lambda v: v >= 1, message=f"--{_name} must be >= 1")
for _name in ("num_grad_updates", "test_num_steps"):
    flags.register_validator(_name, lambda v: v >= 0, message=f"--{_name} must be >= 0")
flags.register_multi_flags_validator(
    ["advantage_scope", "use_maml"],
    lambda f: f["advantage_scope"] != "batch" or not f["use_maml"],
    message="--advantage_scope=batch pools the tasks' paths, which MAML's per-task inner step "
            "cannot use: only with --use_maml=False")
flags.register_validator("sampling_lanes", lambda v: v is None or v >= 1,
                         message="--sampling_lanes must be a positive integer")
flags.register_validator("num_workers", lambda v: v is None or v >= 0,
                         message="--num_workers must be >= 0")
flags.register_validator("fast_lr", lambda v: v is None or (math.isfinite(v) and v > 0),
                         message="--fast_lr must be > 0 and finite")
flags.register_validator("step_size", lambda v: math.isfinite(v) and v > 0,
                         message="--step_size must be > 0 and finite")
flags.register_validator("checkpoint_minutes", lambda v: math.isfinite(v) and v >= 0,
                         message="--checkpoint_minutes must be >= 0 and finite")
flags.register_validator("discount", lambda v: 0 < v <= 1, message="--discount must be in (0, 1]")
flags.register_validator("gae_lambda", lambda v: 0 <= v <= 1,
                         message="--gae_lambda must be in [0, 1]")
flags.register_validator("fd_base_eps", lambda v: math.isfinite(v) and v > 0,
                         message="--fd_base_eps must be > 0 and finite")
flags.register_validator("cg_damping", lambda v: math.isfinite(v) and v >= 0,
                         message="--cg_damping must be >= 0 and finite")
flags.register_validator("backtrack_ratio", lambda v: 0 < v < 1,
                         message="--backtrack_ratio must be in (0, 1)")
flags.register_validator("pretrain_lr", lambda v: math.isfinite(v) and v > 0,
                         message="--pretrain_lr must be > 0 and finite")
flags.register_validator("init_std", lambda v: math.isfinite(v) and v > 0,
                         message="--init_std must be > 0 and finite")
flags.register_validator(
    "hidden_sizes", lambda v: len(v) >= 1 and all(s.isdigit() and int(s) > 0 for s in v),
    message="--hidden_sizes must be a comma-separated list of positive integers, e.g. 100,100")
flags.register_validator(
    "test_checkpoint", lambda v: v in ("best", "latest") or (v.isdigit()),
    message="--test_checkpoint must be 'best', 'latest' or a non-negative iteration number")


for _name in ("backward_fraction", "test_backward_fraction"):
    flags.register_validator(_name, lambda v: 0 < v < 1, message=f"--{_name} must be in (0, 1)")


@flags.multi_flags_validator(["env_name", "backward_fraction", "test_backward_fraction"])
def _backward_fraction_needs_directions(values):
    try:
        spec = get_spec(values["env_name"])
    except UnknownEnvError:
        return True    # --env_name's own validator names the problem
    for name in ("backward_fraction", "test_backward_fraction"):
        if values[name] != RELEASED_BACKWARD_FRACTION and not spec.direction:
            raise flags.ValidationError(
                f"--{name}={values[name]}: only the forward/backward tasks (cheetah_dir, "
                f"ant_dir) have directions to share out, not --env_name={spec.name}")
    return True


@flags.multi_flags_validator(["pretrain_optimizer", "use_maml"],
                             message="--pretrain_optimizer=adam trains the pretrained "
                                     "baseline: it needs --use_maml=False (MAML meta-trains "
                                     "with TRPO)")
def _adam_only_pretrained(values):
    return values["pretrain_optimizer"] == "trpo" or not values["use_maml"]


@flags.multi_flags_validator(["distribute", "num_cpu_devices", "meta_batch_size", "env_name",
                              "use_maml", "pretrain_optimizer"])
def _distribution_usable(values):
    """Checked before anything is built or sampled; with GPUs the number of replicas is
    known only later, and rl.trainer checks it again before sampling."""
    distribute, count = values["distribute"], values["num_cpu_devices"]
    if distribute == "multi_worker":
        raise flags.ValidationError(
            "--distribute=multi_worker is not supported for RL (python -m rl.main): every "
            "worker would have to sample the same rollouts; use --distribute=mirrored "
            "(the devices of one host)")
    if count is None or count < 1:
        raise flags.ValidationError(f"--num_cpu_devices must be >= 1, got {count}")
    if distribute != "mirrored":
        if count != 1:
            raise flags.ValidationError(f"--num_cpu_devices={count} needs "
                                        f"--distribute=mirrored")
        return True
    if not values["use_maml"] and values["pretrain_optimizer"] == "adam":
        raise flags.ValidationError("--distribute=mirrored distributes the TRPO meta-step; "
                                    "--pretrain_optimizer=adam runs on one device (use "
                                    "--distribute=none)")
    batch = values["meta_batch_size"]
    if batch is None:
        try:
            batch = task_defaults(values["env_name"])["meta_batch_size"]
        except UnknownEnvError:
            return True   # the env_name validator reports it
    if batch % count:
        raise flags.ValidationError(
            f"--meta_batch_size={batch} is not divisible by --num_cpu_devices={count} "
            f"(--distribute=mirrored): every replica needs the same number of tasks")
    return True


@flags.multi_flags_validator(["logdir", "mode"])
def _logdir_usable(values):
    """Training and testing write in --logdir; export only reads it."""
    path = values["logdir"]
    if values["mode"] == "export":
        return True
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise flags.ValidationError(f"--logdir must be a folder this process can create and "
                                    f"write to ({path}: {error.strerror or error})")
    return True


common.register_export_dir_validator()
common.define_experiment_flags(("rl",))

# The per-task defaults live beside the presets (flags/experiments.py): one definition that
# this module, the benchmarks and the presets share.
task_defaults = experiments.task_defaults
test_step_size = experiments.test_step_size


def resolved(name: str, method: str | None = None):
    """A flag's value, or its task default when unset (``test_fast_lr`` also needs the
    method: maml, pretrained, random or oracle)."""
    value = getattr(FLAGS, name)
    if value is not None:
        return value
    if name == "test_fast_lr":
        return test_step_size(FLAGS.env_name, method, resolved("fast_lr"))
    if name == "hidden_nonlinearity":
        point_random = get_spec(FLAGS.env_name).name == "point" and FLAGS.test_init == "random"
        return "tanh" if point_random else "relu"
    return task_defaults(FLAGS.env_name)[name]
