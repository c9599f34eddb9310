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
    obs = np.clip(observations, -10.0, 10.0)
    horizon = observations.shape[-2]
    steps = (np.arange(horizon, dtype=np.float64) / 100.0).reshape(-1, 1)
    steps = np.broadcast_to(steps, observations.shape[:-1] + (1,))
    ones = np.ones_like(steps)
    return np.concatenate([obs, obs ** 2, steps, steps ** 2, steps ** 3, ones], axis=-1)


class LinearFeatureBaseline:
    """One coefficient vector per task; ``fit`` then ``predict`` on (K, N, T, obs_dim)."""

    def __init__(self, reg_coeff: float = 1e-5, max_tries: int = 5):
        self.reg_coeff = reg_coeff
        self.max_tries = max_tries
        self.coeffs: np.ndarray | None = None  # (K, F)

    def fit(self, observations: np.ndarray, returns: np.ndarray, mask: np.ndarray) -> None:
        feats = features(observations)
        num_tasks, num_features = feats.shape[0], feats.shape[-1]
        feats = feats.reshape(num_tasks, -1, num_features)
        weights = mask.reshape(num_tasks, -1, 1)
        targets = returns.reshape(num_tasks, -1)
        self.coeffs = np.zeros((num_tasks, num_features))
        for k in range(num_tasks):
            valid = feats[k] * weights[k]  # padded rows become zero rows
            gram = valid.T @ valid
            rhs = valid.T @ targets[k]
            reg = self.reg_coeff
            for _ in range(self.max_tries):
                coeffs = np.linalg.lstsq(gram + reg * np.eye(num_features), rhs, rcond=None)[0]
                if not np.any(np.isnan(coeffs)):
                    break
                reg *= 10.0
            self.coeffs[k] = coeffs

    def predict(self, observations: np.ndarray) -> np.ndarray:
        if self.coeffs is None:
            raise RuntimeError("LinearFeatureBaseline.predict called before fit")
        feats = features(observations)
        num_tasks = feats.shape[0]
        flat = feats.reshape(num_tasks, -1, feats.shape[-1])
        values = np.einsum("kmf,kf->km", flat, self.coeffs)
        return values.reshape(observations.shape[:-1])
