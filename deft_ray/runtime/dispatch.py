"""What the coordinator's round needs from its devices and its planner, wherever they run.

A :class:`DevicePool` runs one dispatch of work orders and reports what came back
(:class:`Dispatch`): the uploads with their arrival times, the devices that failed (their process
died, or they raised) and the devices still computing when the straggler deadline passed. It can
also drop a failed device, start a fresh one in its place, and save and restore the devices'
batch streams for checkpoints. The pools themselves live in :mod:`deft_ray.actors.pool`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from deft_ray.planners import Instance, Plan
from deft_ray.runtime.records import BlockUpload, WorkOrder


@dataclass(frozen=True, slots=True)
class Arrival:
    """An upload and the wall seconds from dispatch to its arrival."""

    upload: BlockUpload
    wall_s: float


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What came back from one dispatch of work orders."""

    arrivals: tuple[Arrival, ...]
    failures: Mapping[str, str] = field(default_factory=dict)
    """Device -> what went wrong (its process died, or the exception it raised)."""
    unfinished: tuple[str, ...] = ()
    """Devices whose upload had not arrived when the wall-clock deadline passed."""


class DevicePool(Protocol):
    """The devices of a run, as the coordinator sees them."""

    def train(self, orders: Mapping[str, WorkOrder], adapter: Mapping[str, np.ndarray], *,
              timeout_s: float, deadline_s: float | None = None) -> Dispatch:
        """Run the orders (``adapter`` is published once for all devices) and collect the uploads,
        giving up on devices still busy ``deadline_s`` wall seconds after dispatch."""

    def remove(self, name: str) -> None:
        """Stop a device and forget it."""

    def restart(self, name: str) -> None:
        """Replace a failed device by a fresh one with the same spec and data."""

    def stream_states(self) -> dict[str, dict[str, Any]]:
        """Each device's batch-stream state."""

    def load_stream_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore batch-stream states saved by :meth:`stream_states`."""

    def memory_usage(self) -> dict[str, dict[str, float]] | None:
        """Each device process's ``rss_bytes`` and ``uss_bytes``; ``None`` when the devices share
        this process."""


class PlannerLike(Protocol):
    def plan(self, instance: Instance, round_idx: int) -> Plan:
        """The round's plan."""

    def plan_round(self, instance: Instance, round_idx: int) -> Any:
        """The round's plan with the warnings raised making it (a
        :class:`~deft_ray.actors.planner.PlannedRound`)."""

    def start_plan(self, instance: Instance, round_idx: int) -> Callable[[], Any]:
        """Start :meth:`plan_round` (a planner actor solves in the background); the call returned
        waits for it and raises what it raised."""
