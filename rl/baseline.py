"""rllab's linear feature baseline, fitted separately for every task of a batch.

Features per step: [clip(obs, -10, 10), its square, t/100, (t/100)^2, (t/100)^3, 1]; ridge
regression on the discounted returns with coefficient 1e-5, multiplied by 10 (up to 5 tries)
while the solution has NaNs. The original solves with ``np.linalg.lstsq`` on the regularised
normal equations; so does this (one small solve per task).
"""
from __future__ import annotations

import numpy as np


def features(observations: np.ndarray) -> np.ndarray:
    """(..., T, obs_dim) -> (..., T, 2 * obs_dim + 4); t counts from 0 at a path's start."""
    horizon = observations.shape[-2]
    steps = np.broadcast_to(np.arange(horizon, dtype=np.float64), observations.shape[:-1])
    return _row_features(observations, steps)


def _row_features(observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The features of observations (..., obs_dim) taken at time steps ``steps`` (...)."""
    obs = np.clip(observations, -10.0, 10.0).astype(np.float64, copy=False)
    t = (steps / 100.0)[..., None]
    return np.concatenate([obs, obs ** 2, t, t ** 2, t ** 3, np.ones_like(t)], axis=-1)


class LinearFeatureBaseline:
    """One coefficient vector per task; ``fit`` then ``predict`` on (K, N, T, obs_dim).

    Example:
        >>> import numpy as np
        >>> from rl.baseline import LinearFeatureBaseline
        >>> obs = np.random.RandomState(0).normal(size=(2, 3, 5, 2))   # K=2 tasks, 3 paths
        >>> returns = np.stack([np.full((3, 5), 1.0), np.full((3, 5), -2.0)])
        >>> mask = np.ones((2, 3, 5))
        >>> baseline = LinearFeatureBaseline()
        >>> baseline.fit(obs, returns, mask)
        >>> baseline.coeffs.shape                  # per task: 2 * obs_dim + 4 features
        (2, 8)
        >>> values = baseline.predict(obs) * mask
        >>> values.shape, np.round(values[:, 0, 0], 3)
        ((2, 3, 5), array([ 1., -2.]))
    """

    def __init__(self, reg_coeff: float = 1e-5, max_tries: int = 5):
        self.reg_coeff = reg_coeff
        self.max_tries = max_tries
        self.coeffs: np.ndarray | None = None  # (K, F)

    def fit(self, observations: np.ndarray, returns: np.ndarray, mask: np.ndarray) -> None:
        """Ridge regression per task on the real steps (``mask`` 1) only.

        Task by task, with the features of the real steps only: the padded batch's features
        at once (float64, 40 x 35 x 200 x 254 for the ant: 570 MB, twice per iteration)
        cost more in memory traffic than the regression itself (docs/RESULTS.md,
        "Throughput", session 25).
        """
        num_tasks, horizon = observations.shape[0], observations.shape[-2]
        steps = np.broadcast_to(np.arange(horizon, dtype=np.float64), observations.shape[1:-1])
        num_features = 2 * observations.shape[-1] + 4
        self.coeffs = np.zeros((num_tasks, num_features))
        for k in range(num_tasks):
            real = mask[k] > 0
            feats = _row_features(observations[k][real], steps[real])
            gram = feats.T @ feats
            rhs = feats.T @ returns[k][real]
            reg = self.reg_coeff
            for _ in range(self.max_tries):
                coeffs = np.linalg.lstsq(gram + reg * np.eye(num_features), rhs, rcond=None)[0]
                if not np.any(np.isnan(coeffs)):
                    break
                reg *= 10.0
            self.coeffs[k] = coeffs

    def predict(self, observations: np.ndarray) -> np.ndarray:
        """Baseline values (K, N, T) at every step, padding included (task by task)."""
        if self.coeffs is None:
            raise RuntimeError("LinearFeatureBaseline.predict called before fit")
        return np.stack([features(task_obs) @ coeffs
                         for task_obs, coeffs in zip(observations, self.coeffs)])
