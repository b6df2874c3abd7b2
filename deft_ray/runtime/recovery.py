"""The recovery policy: what a round does with a device that failed or came late.

It decides, it does not act: the coordinator's round asks it for the straggler deadline, whether
an upload is late, and what to do with a failed device (:class:`FailureDecision`), as Ray Train's
failure policy does for its workers. Lost blocks are then re-planned among the devices still free
(docs/architecture.md, "Failures and stragglers").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from deft_ray.runtime.round_kinds import RoundError


class CoverageError(RoundError):
    """The devices still in the run cannot cover every block, so the run stops with a checkpoint.

    Example scenario: phones fail one by one until fewer devices than blocks are left under a
    one-block-per-device scheme, or none left holds the deepest block's memory.
    """


class FailureDecision(enum.Enum):
    RESTART = "restart"
    """Start a fresh device with the same spec and data; it may take blocks again this round."""
    DROP = "drop"
    """Take the device out of the run; the planner no longer sees it."""


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """``reliability.on_device_failure`` and ``reliability.straggler_deadline`` as decisions."""

    on_device_failure: Literal["replan", "restart"] = "replan"
    straggler_deadline: float | None = None
    """Multiple of the planned latency after which an upload is late (``None``: never)."""

    def deadline_s(self, planned_latency_s: float) -> float | None:
        """Emulated seconds after dispatch at which a phase stops waiting."""
        return planned_latency_s * self.straggler_deadline if self.straggler_deadline else None

    @staticmethod
    def is_late(latency_s: float, deadline_s: float | None) -> bool:
        return deadline_s is not None and latency_s > deadline_s * (1 + 1e-9)

    def on_failure(self, *, failed_before_this_round: bool) -> FailureDecision:
        """A device that fails twice in one round is dropped, so a restart loop cannot hang."""
        if self.on_device_failure == "restart" and not failed_before_this_round:
            return FailureDecision.RESTART
        return FailureDecision.DROP
