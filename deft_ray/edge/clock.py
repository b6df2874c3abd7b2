"""Bandwidth-delayed transfers and the two clocks of a run.

An upload of ``payload_bits`` over a share with rate ``R`` takes ``payload_bits / R`` emulated
seconds; a device computes for ``compute_scale`` times the profile's time of its lowest block.
Under the ``virtual`` clock nothing sleeps: the delays are accounted, so runs are fast and
reproducible. Under the ``realtime`` clock they really elapse, scaled by ``time_scale`` wall
seconds per emulated second (a device whose real computation takes longer than its emulated
window is a real straggler), so arrival order is real and the measured round latency, from
dispatch to the last arrival, can be compared with the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal


def transfer_time_s(payload_bits: float, rate_bps: float) -> float:
    """Seconds to send ``payload_bits`` at ``rate_bps``."""
    if rate_bps <= 0:
        return float("inf")
    return payload_bits / rate_bps


@dataclass(frozen=True, slots=True)
class Clock:
    """``virtual`` accounts emulated time; ``realtime`` also lets it elapse."""

    kind: Literal["virtual", "realtime"] = "virtual"
    time_scale: float = 1.0
    """Wall seconds per emulated second (realtime only)."""

    @property
    def realtime(self) -> bool:
        return self.kind == "realtime"

    def elapse(self, emulated_s: float, *, already_spent_wall_s: float = 0.0) -> None:
        """Let ``emulated_s`` pass (realtime: sleep what ``already_spent_wall_s`` did not cover)."""
        if self.realtime:
            remaining = emulated_s * self.time_scale - already_spent_wall_s
            if remaining > 0:
                time.sleep(remaining)

    def emulated_since(self, start_wall_s: float) -> float:
        """Emulated seconds since ``time.perf_counter()`` read ``start_wall_s`` (realtime only)."""
        return (time.perf_counter() - start_wall_s) / self.time_scale
