"""The planner: turns each round's Instance into a Plan with the configured scheme."""

from __future__ import annotations

from typing import Any, Mapping

from deft_ray.planners import Instance, Plan, get_scheme, solve


class Planner:
    """Plain class (``PlannerActor`` under Ray): one scheme (built with ``options``), seeded per round."""

    def __init__(self, scheme: str, *, seed: int, options: Mapping[str, Any] | None = None):
        self.scheme = get_scheme(scheme, **dict(options or {}))
        self.seed = seed

    def plan(self, instance: Instance, round_idx: int) -> Plan:
        return solve(instance, self.scheme, seed=self.seed + round_idx)
