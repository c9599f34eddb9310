"""TRPO's pieces: conjugate gradient, Hessian-vector products, backtracking line search.

Pure functions on flat numpy vectors (float64 accumulation), so they can be tested on known
systems. ``finite_difference_hvp`` is the original's product (symmetric difference of the
KL's gradient with eps = base_eps / (||params|| + 1e-8)): it avoids third derivatives through
the inner policy-gradient step; the exact double-backprop product is the comparison option.
The perturbation is eps times the *unnormalised* vector (as rllab), so the product's accuracy
depends on the CG vector's scale; docs/RL.md measures both the documented base_eps (1e-8) and
the one maml_rl's optimizer actually passed (1.0).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from absl import logging

Vector = np.ndarray


def conjugate_gradient(hvp: Callable[[Vector], Vector], b: Vector, iterations: int = 10,
                       residual_tol: float = 1e-10) -> Vector:
    """Approximately solves H x = b for symmetric positive-definite H given x -> H x."""
    b = np.asarray(b, dtype=np.float64)
    x = np.zeros_like(b)
    residual = b.copy()
    direction = b.copy()
    residual_sq = residual @ residual
    for _ in range(iterations):
        if residual_sq < residual_tol:
            break
        h_direction = np.asarray(hvp(direction), dtype=np.float64)
        alpha = residual_sq / (direction @ h_direction)
        x += alpha * direction
        residual -= alpha * h_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x


def finite_difference_hvp(grad_fn: Callable[[Vector], Vector], params: Vector,
                          base_eps: float = 1e-8) -> Callable[[Vector], Vector]:
    """v -> (g(p + eps v) - g(p - eps v)) / (2 eps), eps = base_eps / (||p|| + 1e-8)."""
    params = np.asarray(params)
    eps = base_eps / (np.linalg.norm(params) + 1e-8)

    def hvp(vector: Vector) -> Vector:
        vector = np.asarray(vector, dtype=params.dtype)
        plus = np.asarray(grad_fn(params + eps * vector), dtype=np.float64)
        minus = np.asarray(grad_fn(params - eps * vector), dtype=np.float64)
        return (plus - minus) / (2.0 * eps)

    return hvp


def damped(hvp: Callable[[Vector], Vector], damping: float) -> Callable[[Vector], Vector]:
    """H + damping * I (rllab's ``reg_coeff``)."""
    return lambda vector: np.asarray(hvp(vector), dtype=np.float64) + damping * vector


@dataclasses.dataclass
class LineSearchResult:
    """What :func:`backtracking_line_search` returns: the parameters (the original ones if
    no step was accepted), how many backtracks, the last loss and KL, and why it failed.

    Example:
        >>> import numpy as np
        >>> from rl.optimization import backtracking_line_search
        >>> def loss_and_kl(p):                   # minimum at 0; "KL" from the start at 1
        ...     return float(p @ p), float((p - 1.0) @ (p - 1.0))
        >>> result = backtracking_line_search(loss_and_kl, np.array([1.0]), np.array([2.0]),
        ...                                   loss_before=1.0, max_kl=1.0)
        >>> result.accepted, result.backtracks, np.round(result.params, 4)
        (True, 4, array([0.1808]))
        >>> result = backtracking_line_search(loss_and_kl, np.array([1.0]), np.array([2.0]),
        ...                                   loss_before=1.0, max_kl=1.0, max_backtracks=1)
        >>> result.accepted, result.params, result.reason     # rejected: params unchanged
        (False, array([1.]), 'loss not improving, KL 4 > 1')
    """

    params: Vector
    accepted: bool
    backtracks: int
    loss: float
    kl: float
    reason: str = ""


def backtracking_line_search(loss_and_kl: Callable[[Vector], tuple], params: Vector,
                             full_step: Vector, loss_before: float, max_kl: float,
                             ratio: float = 0.8, max_backtracks: int = 15) -> LineSearchResult:
    """Tries params - ratio^i * full_step for i = 0..max_backtracks-1 and accepts the first
    that lowers the loss and keeps the KL within ``max_kl``; otherwise returns the original
    ``params`` (the step is rejected, as the original's "Rejecting the step!")."""
    params = np.asarray(params)
    loss = kl = float("nan")
    for i in range(max_backtracks):
        candidate = params - (ratio ** i) * full_step
        loss, kl = (float(value) for value in loss_and_kl(candidate))
        if np.isfinite(loss) and np.isfinite(kl) and loss < loss_before and kl <= max_kl:
            return LineSearchResult(candidate, True, i, loss, kl)
    reasons = []
    if not np.isfinite(loss):
        reasons.append("loss is NaN")
    if not np.isfinite(kl):
        reasons.append("KL is NaN")
    if np.isfinite(loss) and loss >= loss_before:
        reasons.append("loss not improving")
    if np.isfinite(kl) and kl > max_kl:
        reasons.append(f"KL {kl:.4g} > {max_kl:.4g}")
    reason = ", ".join(reasons) or "no acceptable step"
    logging.warning("Line search condition violated (%s) after %d backtracks. "
                    "Rejecting the step: parameters restored.", reason, max_backtracks)
    return LineSearchResult(params, False, max_backtracks, loss, kl, reason)
