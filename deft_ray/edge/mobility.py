"""Mobility: each device's distance to the access point as a bounded random walk over emulated time.

A device of a group with ``speed_mps`` v > 0 starts at its spec's distance and, at every look
``dt`` emulated seconds after the last, picks a direction (towards or away from the access point,
with equal odds) and travels ``v dt`` metres along it, reflecting at its group's ``distance_m``
bounds, so it never leaves them and its displacement is ``v dt`` unless it bounced
(docs/method.md, "Channels and availability over time").
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: Entropy that separates the mobility stream from the run's other seeded streams.
_STREAM = 0x30B1


def reflect(position_m: np.ndarray, low_m: np.ndarray, high_m: np.ndarray) -> np.ndarray:
    """``position_m`` folded back into ``[low_m, high_m]`` by reflection at both bounds."""
    span = high_m - low_m
    folded = np.mod(position_m - low_m, np.where(span > 0, 2 * span, 1.0))
    return np.where(span > 0, low_m + span - np.abs(folded - span), low_m)


class Mobility:
    """The distances of ``names``: static where the speed is 0."""

    def __init__(self, names: Sequence[str], *, start_m: Sequence[float], low_m: Sequence[float],
                 high_m: Sequence[float], speed_mps: Sequence[float], seed: int):
        self.names = tuple(names)
        self.low_m, self.high_m = np.asarray(low_m, dtype=float), np.asarray(high_m, dtype=float)
        self.speed_mps = np.asarray(speed_mps, dtype=float)
        self.distance_m = np.asarray(start_m, dtype=float).copy()
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM]))
        self.time_s = 0.0

    @property
    def moving(self) -> bool:
        return bool(np.any(self.speed_mps > 0))

    def advance_to(self, time_s: float) -> None:
        """Move every device to where it is at emulated time ``time_s`` (never backwards)."""
        dt_s = time_s - self.time_s
        if dt_s < 0:
            raise ValueError(f"mobility cannot go back in time ({self.time_s} -> {time_s})")
        self.time_s = float(time_s)
        if not self.moving or dt_s == 0:
            return
        direction = self.rng.choice((-1.0, 1.0), size=len(self.names))
        self.distance_m = reflect(self.distance_m + direction * self.speed_mps * dt_s, self.low_m, self.high_m)

    def distances(self) -> dict[str, float]:
        return dict(zip(self.names, self.distance_m.tolist()))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "distance_m": self.distance_m.tolist(), "time_s": self.time_s}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])
        self.distance_m = np.asarray(state["distance_m"], dtype=float)
        self.time_s = float(state["time_s"])
