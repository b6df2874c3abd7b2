"""The planner: turns each round's Instance into a Plan with the run's scheme."""

from __future__ import annotations

from deft_ray.planners import Instance, Plan, Scheme, solve


class Planner:
    """Plain class (``PlannerActor`` under Ray): the run's scheme object, seeded per round."""

    def __init__(self, scheme: Scheme, *, seed: int):
        self.scheme = scheme
        self.seed = seed

    def plan(self, instance: Instance, round_idx: int) -> Plan:
        return solve(instance, self.scheme, seed=self.seed + round_idx)
