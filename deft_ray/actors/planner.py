"""The planner: turns each round's Instance into a Plan with the run's scheme."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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

    def plan(self, instance: Instance, round_idx: int) -> Plan:
        return solve(instance, self.scheme, seed=self.seed + round_idx)

    def plan_round(self, instance: Instance, round_idx: int) -> PlannedRound:
        """:meth:`plan`, keeping the warnings the scheme raised."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = self.plan(instance, round_idx)
        return PlannedRound(plan, tuple(f"{w.category.__name__}: {w.message}" for w in caught))
