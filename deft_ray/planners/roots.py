"""Root finding for monotone scalar functions, elementwise over arrays (pure numpy)."""

from __future__ import annotations

import numpy as np

#: Newton iterations at most; each bisects instead when its step leaves the bracket.
MAX_ITERATIONS = 60


def bracketed_newton(residual, start: np.ndarray, low: np.ndarray, high: np.ndarray, *,
                      increasing: bool) -> np.ndarray:
    """Newton's method on a monotone scalar function, elementwise, kept inside ``[low, high]``
    (a step that leaves the bracket bisects instead); stops when every step is below 1e-15.
    ``residual(u, index)`` returns the value and slope at ``u`` of the elements ``index``."""
    u, low, high = start.copy(), low.copy(), high.copy()
    active = np.ones(u.shape, dtype=bool)
    for _ in range(MAX_ITERATIONS):
        indices = np.flatnonzero(active)
        value, slope = residual(u[indices], indices)
        positive = value > 0
        rising = positive if increasing else ~positive
        sub_low, sub_high, sub_u = low[active], high[active], u[active]
        sub_high = np.where(rising, sub_u, sub_high)
        sub_low = np.where(rising, sub_low, sub_u)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = sub_u - value / slope
        converged = np.abs(step - sub_u) <= 1e-15 * np.maximum(1.0, np.abs(sub_u))
        inside = converged | (np.isfinite(step) & (step > sub_low) & (step < sub_high))
        new_u = np.where(inside, step, 0.5 * (sub_low + sub_high))
        low[active], high[active], u[active] = sub_low, sub_high, new_u
        active[indices[converged]] = False
        if not active.any():
            break
    return u
