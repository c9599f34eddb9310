"""Checks of a TRPO step computed outside the learner (shared by the RL test files).

Why: the line search reports the KL of the step it accepted, so a test reading that number
checks the line search against itself. Here the post-update policies before and after a
step are rebuilt by adapting again (``rl.adaptation``, the code the sampler runs) and the
KL between them is the closed form for diagonal Gaussians, in numpy.
"""
from __future__ import annotations

import numpy as np

from rl.adaptation import PolicyAdapter, to_sample_batch


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q):
    """KL(p || q) of diagonal Gaussians, summed over the last (action) axis."""
    var_p, var_q = np.exp(2 * log_std_p), np.exp(2 * log_std_q)
    return np.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5,
                  axis=-1)


def post_update_distribution(adapter: PolicyAdapter, theta, train_episodes, valid_episodes,
                             use_maml=True):
    """(mean, log_std, mask) at the post-update observations of the policy adapted from
    ``theta`` on ``train_episodes`` (no adaptation for the pretrained baseline)."""
    policy = adapter.policy
    valid = to_sample_batch(valid_episodes, adapter.dtype)
    if use_maml and train_episodes:
        params = adapter.adapted_params(theta, [to_sample_batch(e, adapter.dtype)
                                                for e in train_episodes])
    else:
        num_tasks = valid.obs.shape[0]
        params = {name: np.repeat(np.asarray(value)[None], num_tasks, axis=0)
                  for name, value in policy.unflatten(theta).items()}
    mean, log_std = policy.forward(valid.obs, params=params)
    return np.asarray(mean, np.float64), np.asarray(log_std, np.float64), valid.mask.numpy()


def independent_kl(adapter: PolicyAdapter, theta_old, theta_new, train_episodes,
                   valid_episodes, use_maml=True) -> float:
    """Mean over every real post-update step of KL(pi_old' || pi_new'), the quantity TRPO's
    constraint bounds (the original averages over all tasks' steps together)."""
    old = post_update_distribution(adapter, theta_old, train_episodes, valid_episodes, use_maml)
    new = post_update_distribution(adapter, theta_new, train_episodes, valid_episodes, use_maml)
    mask = old[2]
    kl = gaussian_kl(old[0], old[1], new[0], new[1])
    return float(np.sum(kl * mask) / np.sum(mask))
