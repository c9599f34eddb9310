"""scripts/bench_rl.py times what training runs (issue 10's RL throughput figures).

Its meta-iterations and TRPO steps once ran with ``TRPOConfig``'s defaults instead of the
presets' settings: the FD step 1e-8 where training passes 1.0 (every ant line search was
rejected) and the FD product for the point robot, which trains with the exact one. These
tests hold the benchmark's configuration to the MAML presets' documented settings.
"""
import os

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_rl")


@pytest.mark.parametrize("env_name, hvp, fd_base_eps, step_size, sampling, fast_batch_size", [
    ("point", "exact", 1.0, 0.01, "total", 20),
    ("cheetah_vel", "fd", 1.0, 0.01, "per_task", 10),    # the released checkpoint's batch
    ("cheetah_dir", "fd", 1.0, 0.02, "per_task", 20),    # ... and its KL step
    ("ant_vel", "fd", 1.0, 0.01, "per_task", 20),
    ("ant_dir", "fd", 1.0, 0.01, "per_task", 40),
])
def test_benchmark_uses_the_presets_settings(bench, env_name, hvp, fd_base_eps, step_size,
                                            sampling, fast_batch_size):
    cfg = bench.preset_train_config(env_name)
    assert cfg.env_name == env_name
    assert cfg.trpo.use_maml and cfg.trpo.hvp == hvp
    assert cfg.trpo.fd_base_eps == fd_base_eps
    assert cfg.trpo.step_size == step_size
    assert cfg.sampling == sampling and cfg.fast_batch_size == fast_batch_size
    assert cfg.trpo.fast_lr == (0.5 if env_name == "point" else 0.1)


def test_benchmark_overrides_and_never_resumes_a_real_run(bench):
    cfg = bench.preset_train_config("ant_vel", meta_batch_size=3, fast_batch_size=2, n_itr=2,
                                    num_workers=0)
    assert (cfg.meta_batch_size, cfg.fast_batch_size, cfg.n_itr, cfg.num_workers) == (3, 2, 2, 0)
    assert cfg.trpo.fd_base_eps == 1.0     # the preset's setting survives the overrides
    assert not cfg.resume
    assert os.path.basename(cfg.logdir).startswith("bench_rl_")
    assert not os.listdir(cfg.logdir)      # a fresh folder, not logs/rl/ant_vel_maml
