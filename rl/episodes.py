"""A batch of trajectories for several tasks, and its returns and advantages (numpy).

Layout: (tasks K, episodes N, time T, ...) with a 0/1 ``mask`` marking the steps that exist
(paths stop at ``done`` or at the horizon). Padding to T keeps every task's arrays the same
shape, so the TensorFlow side traces once per configuration.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rl.baseline import LinearFeatureBaseline


@dataclasses.dataclass
class Episodes:
    """The paths of K tasks, N per task, padded to T steps; ``mask`` marks the real steps.

    Example:
        >>> import numpy as np
        >>> from rl.episodes import Episodes, compute_advantages
        >>> mask = np.array([[[1, 1, 1], [1, 0, 0]]], dtype=np.float32)   # 1 task, 2 paths
        >>> rewards = np.array([[[1.0, 1.0, 1.0], [5.0, 0.0, 0.0]]])
        >>> episodes = Episodes(np.zeros((1, 2, 3, 2)), np.zeros((1, 2, 3, 2)), rewards, mask)
        >>> episodes.episode_returns(), episodes.average_return_per_task()
        (array([[3., 5.]]), array([4.]))
        >>> compute_advantages(episodes, discount=0.99, gae_lambda=1.0).advantages.shape
        (1, 2, 3)
    """

    observations: np.ndarray   # (K, N, T, obs_dim)
    actions: np.ndarray        # (K, N, T, act_dim), raw policy samples
    rewards: np.ndarray        # (K, N, T), zero where mask is 0
    mask: np.ndarray           # (K, N, T), 1.0 for real steps
    advantages: np.ndarray | None = None  # (K, N, T), filled by ``compute_advantages``
    #: flat() packs each task's real steps first and drops the common padding (budget
    #: sampling: N can be hundreds of mostly masked point-robot paths)
    compact: bool = False

    @property
    def num_tasks(self) -> int:
        return self.rewards.shape[0]

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, (K, N)."""
        return np.sum(self.rewards * self.mask, axis=-1)

    def episode_exists(self) -> np.ndarray:
        """(K, N) True for real paths; a budget sampler pads tasks that got fewer paths
        with empty (fully masked) ones."""
        return self.mask[..., 0] > 0

    def average_return_per_task(self) -> np.ndarray:
        """The paper's "average return": mean over a task's (real) episodes, (K,)."""
        exists = self.episode_exists()
        return (self.episode_returns() * exists).sum(axis=-1) / np.maximum(exists.sum(-1), 1)

    def flat(self, name: str) -> np.ndarray:
        """``name`` reshaped to (K, N*T, ...), the layout of the TensorFlow losses (masked
        means, so the order of steps does not matter). With ``compact`` each task's real
        steps come first and the length is cut to the largest task's count, rounded up to a
        multiple of T (fewer distinct shapes, fewer retraces)."""
        array = getattr(self, name)
        k, n, t = self.mask.shape
        flat = array.reshape((k, n * t) + array.shape[3:])
        if not self.compact:
            return flat
        mask = self.mask.reshape(k, n * t)
        order = np.argsort(-mask, axis=1, kind="stable")
        length = min(n * t, -(-int(mask.sum(axis=1).max()) // t) * t)
        index = order[:, :length].reshape((k, length) + (1,) * (flat.ndim - 2))
        return np.take_along_axis(flat, index, axis=1)


def merge_tasks(episodes: Episodes) -> Episodes:
    """The whole batch as one task: every path of every task side by side, (1, K*N, T, ...).

    Why: rllab's plain TRPO (``BatchPolopt``, the released oracle and pretrained baselines)
    processes the batch it sampled as one list of paths: one linear baseline fitted on all of
    them (the goal, when in the observation, is one of its features) and advantages centred
    over all of them. maml_rl's MAML fits and centres per task instead. With one path per
    goal (the oracles' 100 fresh goals), per-task processing would fit each path's own returns
    and centre each path to mean 0: no signal left on which paths did better.

    Example::

        pooled = compute_advantages(merge_tasks(batch), 0.99, 1.0)   # rllab's TRPO
    """
    k, n = episodes.mask.shape[:2]

    def merged(array):
        return array.reshape((1, k * n) + array.shape[2:])

    return Episodes(merged(episodes.observations), merged(episodes.actions),
                    merged(episodes.rewards), merged(episodes.mask),
                    None if episodes.advantages is None else merged(episodes.advantages),
                    compact=episodes.compact)


def discounted_cumsum(values: np.ndarray, mask: np.ndarray, discount: float) -> np.ndarray:
    """sum_l discount^l * values[..., t + l] along the last axis, within masked paths."""
    out = np.zeros_like(values)
    running = np.zeros(values.shape[:-1])
    for t in reversed(range(values.shape[-1])):
        running = values[..., t] + discount * running * mask[..., t]
        out[..., t] = running * mask[..., t]
    return out


def compute_advantages(episodes: Episodes, discount: float, gae_lambda: float,
                       center: bool = True) -> Episodes:
    """Fits the linear baseline per task on discounted returns, then GAE(gamma, lambda).

    As in maml_rl's ``process_samples`` (called once per task): fit first, then predict; the
    baseline value after a path's last step is 0; advantages are centred and scaled per task.
    With lambda = 1 the advantage is exactly return - baseline.
    """
    mask = episodes.mask
    returns = discounted_cumsum(episodes.rewards, mask, discount)
    baseline = LinearFeatureBaseline()
    baseline.fit(episodes.observations, returns, mask)
    values = baseline.predict(episodes.observations) * mask
    next_values = np.concatenate([values[..., 1:], np.zeros_like(values[..., :1])], axis=-1)
    next_mask = np.concatenate([mask[..., 1:], np.zeros_like(mask[..., :1])], axis=-1)
    deltas = (episodes.rewards + discount * next_values * next_mask - values) * mask
    advantages = discounted_cumsum(deltas, mask, discount * gae_lambda)
    if center:
        advantages = center_per_task(advantages, mask)
    episodes.advantages = advantages
    return episodes


def center_per_task(advantages: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(adv - mean) / (std + 1e-8) over each task's real steps; padding stays 0."""
    axes = tuple(range(1, advantages.ndim))
    count = np.maximum(mask.sum(axis=axes, keepdims=True), 1.0)
    mean = (advantages * mask).sum(axis=axes, keepdims=True) / count
    var = (np.square(advantages - mean) * mask).sum(axis=axes, keepdims=True) / count
    return (advantages - mean) / (np.sqrt(var) + 1e-8) * mask
