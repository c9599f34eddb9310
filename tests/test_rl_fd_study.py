"""scripts/fd_hvp_study.py on a small point-robot problem (issue 15, part 3).

The study's claims in docs/RL.md rest on its measurements being right: the exact product is
the reference (its TRPO step lands on the KL bound, its direction is the reference
direction), the documented base_eps 1e-8 leaves most float32 parameters unchanged and its
product is noise, and base_eps 1.0 gives a product of the right order.
"""
import json
import math

import numpy as np
import pytest

from tests.scripts import load_script


def load_study():
    return load_script("fd_hvp_study")


def test_fd_study_small_point_problem(tmp_path):
    study = load_study()
    settings = dict(fast_lr=0.5, meta_batch_size=3, fast_batch_size=4, horizon=20,
                    step_size=0.01)
    result = study.run("point", "init", seed=1, cg_iters=3, settings=settings,
                       hidden_sizes=(16, 16))
    assert result["num_params"] == 2 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2 + 2
    assert len(result["cg"]) == 3
    for row in result["cg"]:
        assert row["fd1e-8_unchanged"] > 0.5             # theta + eps v rounds to theta
        assert row["fd1e-8_rel_error"] > 1e3             # the product is noise
        assert row["fd1_rel_error"] < 10                 # right order of magnitude
        assert math.isclose(row["fd1_length"] / row["fd1e-8_length"], 1e8, rel_tol=1e-6)
    steps = {row["product"]: row for row in result["trpo_steps"]}
    exact = steps["exact"]
    assert "cosine_to_exact" not in exact and -1 <= steps["fd1"]["cosine_to_exact"] <= 1
    assert np.isclose(exact["shs"], exact["shs_exact"], rtol=1e-6)
    # the exact quadratic model puts the full step near the KL bound
    assert 0.5 * settings["step_size"] < exact["full_step_kl"] < 1.5 * settings["step_size"]
    sweep = result["length_sweep"]["first"]
    errors = [row["rel_error"] for row in sweep]
    assert errors[0] > 100 * min(errors)                 # round-off at short perturbations
    text = study.markdown(result)
    assert "| fd1e-8 |" in text and "| 0 |" in text
    json.dumps(result)                                   # the script writes it as JSON


def test_fd_study_refuses_a_missing_checkpoint(tmp_path, capsys):
    study = load_study()
    with pytest.raises(SystemExit) as error:
        study.main(["--env_name=point", f"--checkpoint={tmp_path}/ckpt-5"])
    assert error.value.code == 2
    assert "no checkpoint at" in capsys.readouterr().err


@pytest.mark.parametrize("env_name", ["point", "cheetah_dir", "cheetah_vel", "ant_vel",
                                      "ant_dir"])
def test_fd_study_settings_are_the_released_presets(env_name):
    """The study explains the runs the rl_<env> presets train: same inner step, batch and
    KL bound, so a preset changed later cannot leave the study measuring something else."""
    from absl import flags as absl_flags
    import flags.rl  # noqa: F401  (defines --step_size)
    from flags.experiments import resolved_flags, task_defaults
    settings = load_study().TASKS[env_name]
    preset = {**task_defaults(env_name), **resolved_flags(f"rl_{env_name}")}
    assert settings["fast_lr"] == preset["fast_lr"]
    assert settings["meta_batch_size"] == preset["meta_batch_size"]
    assert settings["fast_batch_size"] == preset["fast_batch_size"]
    assert settings["horizon"] == preset["max_path_length"]
    assert settings["step_size"] == preset.get("step_size", absl_flags.FLAGS["step_size"].default)
