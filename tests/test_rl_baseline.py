"""Linear feature baseline and advantage processing."""
import numpy as np

from rl.baseline import LinearFeatureBaseline, features
from rl.episodes import Episodes, compute_advantages, discounted_cumsum


def test_baseline_fits_a_known_linear_return():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-2, 2, size=(2, 6, 10, 3))          # (tasks, episodes, time, obs)
    feats = features(obs)
    assert feats.shape == (2, 6, 10, 3 * 2 + 4)
    np.testing.assert_allclose(feats[0, 0, 4, -4:], [0.04, 0.04 ** 2, 0.04 ** 3, 1.0])
    true_coeffs = rng.normal(size=(2, feats.shape[-1]))
    returns = np.einsum("kntf,kf->knt", feats, true_coeffs)
    mask = np.ones(returns.shape)
    mask[:, :, 8:] = 0.0                                     # padding must be ignored
    returns_noisy_padding = returns + (1 - mask) * 1e3
    baseline = LinearFeatureBaseline()
    baseline.fit(obs, returns_noisy_padding, mask)
    np.testing.assert_allclose(baseline.predict(obs) * mask, returns * mask, atol=1e-3)


def test_discounted_cumsum_respects_path_ends():
    rewards = np.array([[1.0, 1.0, 1.0, 5.0]])
    mask = np.array([[1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(discounted_cumsum(rewards * mask, mask, 0.5)[0],
                               [1.75, 1.5, 1.0, 0.0])


def test_advantages_with_lambda_one_are_centred_return_minus_baseline():
    rng = np.random.default_rng(1)
    shape = (2, 4, 6)
    episodes = Episodes(rng.normal(size=shape + (2,)), rng.normal(size=shape + (2,)),
                        rng.normal(size=shape), np.ones(shape))
    compute_advantages(episodes, discount=0.9, gae_lambda=1.0, center=False)
    returns = discounted_cumsum(episodes.rewards, episodes.mask, 0.9)
    baseline = LinearFeatureBaseline()
    baseline.fit(episodes.observations, returns, episodes.mask)
    np.testing.assert_allclose(episodes.advantages, returns - baseline.predict(
        episodes.observations), atol=1e-8)
    compute_advantages(episodes, discount=0.9, gae_lambda=1.0, center=True)
    for k in range(2):
        assert abs(episodes.advantages[k].mean()) < 1e-8
        assert abs(episodes.advantages[k].std() - 1.0) < 1e-6


def test_fit_equals_rllabs_fit_on_the_concatenated_paths():
    """rllab fits on its paths' features stacked (each path's t from 0); the task-by-task
    fit on the real rows of the padded batch must give its coefficients, whatever the
    padding holds, and predict at every step with each task's own coefficients."""
    rng = np.random.default_rng(3)
    num_tasks, paths, horizon, obs_dim = 3, 5, 12, 4
    obs = rng.normal(size=(num_tasks, paths, horizon, obs_dim)) * 4.0   # some clipped at 10
    returns = rng.normal(size=(num_tasks, paths, horizon))
    mask = np.zeros((num_tasks, paths, horizon))
    lengths = rng.integers(3, horizon + 1, size=(num_tasks, paths))
    lengths[0, 3:] = 0                                     # task 0 has three paths only
    for k in range(num_tasks):
        for j in range(paths):
            mask[k, j, :lengths[k, j]] = 1.0
    baseline = LinearFeatureBaseline()
    baseline.fit(obs, returns + (1 - mask) * 1e6, mask)
    for k in range(num_tasks):
        rows = [features(obs[k, j, :lengths[k, j]]) for j in range(paths) if lengths[k, j]]
        featmat = np.concatenate(rows)
        targets = np.concatenate([returns[k, j, :lengths[k, j]] for j in range(paths)])
        reference = np.linalg.lstsq(featmat.T @ featmat + 1e-5 * np.eye(featmat.shape[1]),
                                    featmat.T @ targets, rcond=None)[0]
        np.testing.assert_allclose(baseline.coeffs[k], reference, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(baseline.predict(obs)[k], features(obs[k]) @ reference,
                                   rtol=1e-7, atol=1e-9)
    assert baseline.predict(obs).shape == (num_tasks, paths, horizon)
