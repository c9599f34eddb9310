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
