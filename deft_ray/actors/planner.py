"""The planner: turns each round's Instance into a Plan with the run's scheme."""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from deft_ray.planners import Instance, Plan, Scheme, solve


@dataclass(frozen=True, slots=True)
class PlannedRound:
    """A round's plan and the warnings the scheme raised while making it (they become events)."""

    plan: Plan
    warnings: tuple[str, ...] = ()


class Planner:
    """Plain class (``PlannerActor`` under Ray): the run's scheme object, seeded per round."""

    def __init__(self, scheme: Scheme, *, seed: int):
        self.scheme = scheme
        self.seed = seed
        self._background: ThreadPoolExecutor | None = None

    def plan(self, instance: Instance, round_idx: int) -> Plan:
        return solve(instance, self.scheme, seed=self.seed + round_idx)

    def plan_round(self, instance: Instance, round_idx: int) -> PlannedRound:
        """:meth:`plan`, keeping the warnings the scheme raised."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = self.plan(instance, round_idx)
        return PlannedRound(plan, tuple(f"{w.category.__name__}: {w.message}" for w in caught))

    def start_plan(self, instance: Instance, round_idx: int) -> Callable[[], PlannedRound]:
        """What gives the round's :meth:`plan_round` when called (in this process it plans then)."""
        return functools.partial(self.plan_round, instance, round_idx)

    def plan_round_ahead(self, instance: Instance, round_idx: int) -> PlannedRound:
        """:meth:`plan_round` on a thread of the lowest CPU priority (on Linux, where a thread has
        its own), for a round planned while the devices compute: it takes the CPU time they leave
        idle rather than theirs. The planner actor answers one call at a time, so a plan asked for
        meanwhile waits for this one."""
        if self._background is None:
            self._background = ThreadPoolExecutor(max_workers=1, initializer=_lowest_priority,
                                                   thread_name_prefix="plan-ahead")
        return self._background.submit(self.plan_round, instance, round_idx).result()


def _lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19) where threads have their own."""
    if sys.platform.startswith("linux"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
