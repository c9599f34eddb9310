"""End-to-end: a short point-robot MAML run improves; checkpoints, resume, test protocol."""
import json
import os
import pickle

import numpy as np
import pytest

from rl import compare
from rl.adaptation import PolicyAdapter
from rl.config import EvalConfig, PolicyConfig, TrainConfig
from rl.envs.registry import make_vector_env
from rl.evaluate import (evaluate, policy_std, protocol_tasks, save_results, step_length,
                         step_sizes)
from rl.maml_trpo import TRPOConfig
from rl.samplers import BatchSampler
from rl.trainer import Trainer
from tests.rl_checks import independent_kl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(logdir, n_itr, **trpo):
    return TrainConfig(env_name="point", meta_batch_size=10, fast_batch_size=10,
                       max_path_length=100, n_itr=n_itr, seed=3, logdir=str(logdir),
                       policy=PolicyConfig(hidden_sizes=(32, 32)),
                       trpo=TRPOConfig(fast_lr=0.5, **trpo))


def test_short_point_maml_run_improves_post_update_return(tmp_path):
    trainer = Trainer(_config(tmp_path, n_itr=10))
    # every step's KL(old || new), recomputed outside the learner by adapting again from
    # the parameters before and after the step (not the line search's own number)
    step, adapter, kls = trainer.learner.meta_step, trainer.learner.adapter, []

    def checked_step(train_episodes, valid_episodes):
        before = trainer.policy.get_flat().numpy()
        info = step(train_episodes, valid_episodes)
        kls.append((info["accepted"], independent_kl(
            adapter, before, trainer.policy.get_flat().numpy(), train_episodes,
            valid_episodes)))
        return info

    trainer.learner.meta_step = checked_step
    history = trainer.train()
    trainer.close()
    post = [h["return_post_update"] for h in history]
    pre = [h["return_pre_update"] for h in history]
    # the random policy scores about -80; a few TRPO steps must move it clearly
    assert np.mean(post[-3:]) > post[0] + 10, post
    assert np.mean(post[-3:]) > np.mean(pre[-3:]), (pre, post)   # adaptation helps
    assert len(kls) == 10 and sum(accepted for accepted, _ in kls) >= 5, kls
    for accepted, kl in kls:
        # float32 policy: the bound holds up to rounding of the recomputation
        assert (kl <= 0.01 * (1 + 1e-3)) if accepted else (kl == 0.0), kls
    assert os.path.exists(tmp_path / "progress.csv")
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))
    assert trainer.checkpointer.available_iterations()[-1] == 10
    assert trainer.best_checkpointer.available_iterations() == [
        int(trainer.best_iteration.numpy())]


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    trainer = Trainer(_config(tmp_path, n_itr=2))
    trainer.train()
    weights = trainer.policy.get_flat().numpy()
    trainer.close()
    resumed = Trainer(_config(tmp_path, n_itr=3))
    resumed.cfg.resume = True
    history = resumed.train()
    resumed.close()
    assert len(history) == 1                       # only iteration 2 ran
    assert resumed.checkpointer.available_iterations()[-1] == 3
    restored = Trainer(_config(tmp_path, n_itr=3))
    assert restored.checkpointer.restore(2) == 2
    np.testing.assert_allclose(restored.policy.get_flat().numpy(), weights)
    restored.close()


def test_policy_std_and_step_length_by_hand():
    import tensorflow as tf
    from rl.trainer import build_policy
    policy = build_policy(PolicyConfig(hidden_sizes=(3,), init_std=0.5), 2, 2, seed=0)
    np.testing.assert_allclose(policy_std(policy, None, 3), [0.5, 0.5, 0.5], rtol=1e-6)
    start = policy.meta_parameters()
    # task 0 unchanged, task 1 moved by 3 in one weight and 4 in the log-std: length 5
    after = {name: tf.stack([value, value, value]) for name, value in start.items()}
    shift = np.zeros((3, 2), np.float32)
    shift[1] = [4.0, 0.0]
    after["log_std"] = after["log_std"] + shift
    bias = [name for name in after if name != "log_std"][-1]
    bump = np.zeros(after[bias].shape, np.float32)
    bump[1].flat[0] = 3.0
    bump[2].flat[0] = 1.0
    after[bias] = after[bias] + bump
    np.testing.assert_allclose(step_length(policy, None, after), [0.0, 5.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(step_length(policy, after, after), 0.0)
    stds = policy_std(policy, after, 3)
    np.testing.assert_allclose(stds, [0.5, 0.5 * (np.exp(4.0) + 1) / 2, 0.5], rtol=1e-5)


def test_test_protocol_and_compare(tmp_path, capsys):
    assert step_sizes(0.5, 3) == [0.5, 0.25, 0.25]
    assert step_sizes(0.1, 3, decay=0.01) == pytest.approx([0.1, 0.001, 0.001])   # ant_dir
    goals = protocol_tasks("point", 40, goal_seed=1)
    np.random.seed(1)
    np.testing.assert_array_equal(goals, np.random.uniform(-0.5, 0.5, size=(40, 2)))
    from rl.trainer import build_policy
    policy = build_policy(PolicyConfig(hidden_sizes=(16,)), 2, 2, seed=0)
    cfg = EvalConfig(env_name="point", num_tasks=4, episodes_per_task=5, num_steps=2,
                     fast_lr=0.5, method="random", max_path_length=20)
    result = evaluate(policy, cfg)
    assert result["returns"].shape == (3, 4)
    np.testing.assert_array_equal(result["paths_per_task"], 5)
    # diagnostics: the sampling policy's std (the untrained one's is exp(0) = 1 before any
    # step) and each inner step's length, both per task
    assert result["policy_std_per_step"].shape == (3, 4)
    assert result["step_length_per_step"].shape == (2, 4)
    np.testing.assert_allclose(result["policy_std_per_step"][0], 1.0, rtol=1e-6)
    assert np.all(result["step_length_per_step"] > 0)
    # step 0 is the unadapted policy on the protocol's seed; steps 1-2 an adapted one
    sampler = BatchSampler(make_vector_env("point", 4 * 5), 4, 5, 20)
    adapter = PolicyAdapter(policy, cfg.fast_lr)
    for step in range(3):
        unadapted = sampler.sample(goals[:4], adapter.sampling_policy(None), seed=step)
        same = np.allclose(unadapted.average_return_per_task(), result["returns"][step])
        assert same == (step == 0), step
    np.testing.assert_allclose(result["mean_per_step"], result["returns"].mean(axis=1))
    path, csv_path = save_results(result, str(tmp_path / "test_random.pkl"))
    with open(csv_path) as handle:
        assert len(handle.readlines()) == 1 + 3 * 4
    with open(path, "rb") as handle:
        assert pickle.load(handle)["method"] == "random"
    plot = tmp_path / "curves.png"
    assert compare.main([f"--results={path}", f"--plot={plot}"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("point ")]
    with open(os.path.join(ROOT, "docs", "paper_numbers.json")) as handle:
        paper = json.load(handle)["rl_average_return"][result["paper_key"]]["random"]
    assert [row[2] for row in rows] == ["0", "1", "2"]
    for step, row in enumerate(rows):   # ours beside the paper's, step by step
        assert row[1] == "random"
        assert float(row[3]) == pytest.approx(result["mean_per_step"][step], abs=0.006)
        assert float(row[4]) == pytest.approx(result["std_per_step"][step], abs=0.006)
        assert float(row[5]) == paper["mean_per_grad_step"][step]
    assert plot.exists() and (tmp_path / "curves_trajectories_random.png").exists()
    with pytest.raises(SystemExit):
        compare.main(["--results=/nonexistent.pkl"])
