"""The planner: turns each round's Instance into a Plan with the configured scheme."""

from __future__ import annotations

from deft_ray.planners import Instance, Plan, get_scheme, solve


class Planner:
    """Plain class (``PlannerActor`` under Ray): one scheme, seeded per round."""

    def __init__(self, scheme: str, *, seed: int):
        self.scheme = get_scheme(scheme)
        self.seed = seed

    def plan(self, instance: Instance, round_idx: int) -> Plan:
        return solve(instance, self.scheme, seed=self.seed + round_idx)
