"""Exchange polish of a matching at its exact optimal bandwidth (docs/method.md, "JBBA").

JBBA ends by improving its best matchings with exchanges of two or three blocks, screened exactly
by the bandwidth needs at the current latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deft_ray.planners.bandwidth import bandwidth_needed_hz, optimal_bandwidth_for
from deft_ray.planners.instance import Instance

#: Relative bandwidth an exchange must free, at the current latency, to be taken.
_EXCHANGE_SAVING = 1e-10


@dataclass(slots=True)
class Incumbent:
    """The best feasible matching found so far, its optimal bandwidth and latency, and the
    iteration that found it."""

    latency_s: float
    match: np.ndarray
    bandwidth_hz: np.ndarray
    iteration: int = 0


def polish_by_exchanges(instance: Instance, best: Incumbent, max_exchanges: int) -> int:
    """Improve ``best`` in place by exchanges of two or three blocks; returns how many were taken.

    At the current latency T the used devices' needs sum to B. An exchange re-seats a few blocks:
    one block to an idle device (*move*), two blocks swapped between their devices (*swap*), one
    block to an idle device and another into the seat it left (*shift*), or three blocks rotated
    among their devices (*rotation*). If the new needs sum to less than the old ones at T, the
    exchanged matching reaches a latency below T with its own optimal bandwidth. The exchange that
    frees the most bandwidth is taken, and the search repeats at the new latency until none frees
    any. Energy floors raise the needs (docs/method.md, "Energy budgets"). Each round costs one (K, N) need evaluation and O(N K + N^3) vectorised comparisons.
    """
    num_blocks = instance.num_blocks
    blocks = np.arange(num_blocks)
    compute, feasible = instance.compute_matrix_s(), instance.pair_feasible()
    floor = instance.bandwidth_floor_hz()
    payload, channel = instance.block_payload_bits(), instance.channel()
    threshold = -_EXCHANGE_SAVING * instance.bandwidth_hz
    taken = 0
    while taken < max_exchanges:
        target_s, match = best.latency_s, best.match
        allowed = feasible & (compute < target_s)
        rows, cols = np.nonzero(allowed)
        need = np.full((instance.num_devices, num_blocks), np.inf)
        need[rows, cols] = bandwidth_needed_hz(channel.take(rows), compute[rows, cols], payload[cols], target_s,
                                               floor[rows, cols])
        current = need[match, blocks]
        idle = np.ones(instance.num_devices, dtype=bool)
        idle[match] = False
        on_idle = np.where(idle[:, None], need, np.inf)
        best_idle = on_idle.argmin(axis=0) if idle.any() else np.zeros(num_blocks, dtype=int)
        idle_need = on_idle[best_idle, blocks]  # (N,) the cheapest idle seat of each block
        seat = need[match[None, :], blocks[:, None]]  # seat[n, m]: block n on block m's device
        with np.errstate(invalid="ignore"):
            move = idle_need - current
            swap = seat + seat.T - current[:, None] - current[None, :]
            shift = idle_need[:, None] + seat.T - current[:, None] - current[None, :]  # n to idle, m to n's seat
            # rotation[n, m, l]: n to m's device, m to l's, l to n's
            rotation = (seat[:, :, None] + seat[None, :, :] + seat.T[:, None, :]
                        - current[:, None, None] - current[None, :, None] - current[None, None, :])
        n_, m_, l_ = np.ogrid[:num_blocks, :num_blocks, :num_blocks]
        rotation = np.where((n_ != m_) & (m_ != l_) & (n_ != l_), rotation, np.inf)
        np.fill_diagonal(swap, np.inf)
        np.fill_diagonal(shift, np.inf)
        candidates = []
        for kind, gains in (("move", move), ("swap", swap), ("shift", shift), ("rotation", rotation)):
            gains = np.where(np.isnan(gains), np.inf, gains)
            where = np.unravel_index(int(np.argmin(gains)), gains.shape)
            candidates.append((float(gains[where]), kind, where))
        gain, kind, where = min(candidates, key=lambda c: c[0])
        if not gain < threshold:
            break
        candidate = match.copy()
        if kind == "move":
            (n,) = where
            candidate[n] = best_idle[n]
        elif kind == "swap":
            n, m = where
            candidate[n], candidate[m] = match[m], match[n]
        elif kind == "shift":
            n, m = where
            candidate[n], candidate[m] = best_idle[n], match[n]
        else:
            n, m, l = where
            candidate[n], candidate[m], candidate[l] = match[m], match[l], match[n]
        latency, bandwidth = optimal_bandwidth_for(instance, candidate)
        if not latency[0] < best.latency_s:
            break
        best.latency_s, best.match, best.bandwidth_hz = float(latency[0]), candidate, bandwidth[0]
        taken += 1
    return taken
