"""Planning the next round while this round's devices compute (virtual clock).

Under the virtual clock a round that loses no device ends exactly when its plan says: at its
emulated start plus the plan's round latency. So, as the round's work goes out, the coordinator
draws the next round's instance the way that round would draw it (the devices online then, their
channels at that time, the fading from the run's generator) and the planner solves it in the
background, on the CPU time the devices leave idle. When the next round begins in exactly that
state (the same emulated start, the same devices, the run's generator and edge untouched since),
it takes that plan and moves the generator and edge on to where drawing the instance left them.
Otherwise (a device failed or straggled, so the round ended at another time) the plan is thrown
away and the round plans as it always does. Either way the run is the one it would have been
without planning ahead (docs/architecture.md, "Planning ahead").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from deft_ray.edge.dynamics import EdgeDynamics
from deft_ray.errors import InfeasibleError
from deft_ray.planners import Instance


@dataclass(frozen=True, slots=True)
class RunState:
    """What drawing a round's instance reads and moves on: the run's generator and its edge."""

    rng: dict[str, Any]
    edge: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AheadPlan:
    """A round planned ahead, as the round takes it."""

    instance: Instance
    planned: Any
    """The planner's :class:`~deft_ray.actors.planner.PlannedRound`."""
    offline: tuple[str, ...]
    """Candidates offline at the round's start."""


@dataclass(frozen=True, slots=True)
class _Started:
    round_idx: int
    at_s: float
    candidates: tuple[str, ...]
    before: RunState
    after: RunState
    instance: Instance
    offline: tuple[str, ...]
    result: Callable[[], Any]


class PlanAhead:
    """The next round's plan, started while the current round's devices compute.

    ``instance_of(time_s, names, round_idx)`` draws a round's instance from ``rng`` and ``edge``
    (moving them on).
    """

    def __init__(self, edge: EdgeDynamics, rng: np.random.Generator,
                 instance_of: Callable[[float, Sequence[str], int], Instance]):
        self.edge = edge
        self.rng = rng
        self.instance_of = instance_of
        self._started: _Started | None = None

    def state(self) -> RunState:
        return RunState(rng=self.rng.bit_generator.state, edge=self.edge.state_dict())

    def _restore(self, state: RunState) -> None:
        self.rng.bit_generator.state = state.rng
        self.edge.load_state_dict(state.edge)

    def start(self, planner: Any, round_idx: int, at_s: float, candidates: Sequence[str]) -> None:
        """Start planning round ``round_idx``, to begin at emulated ``at_s`` on the ``candidates``
        online then, with ``planner.start_plan`` (:class:`~deft_ray.runtime.dispatch.PlannerLike`);
        the generator and edge are left as they were."""
        before = self.state()
        online = self.edge.availability.online(candidates, at_s)
        if not online:
            self._restore(before)
            self._started = None
            return
        instance = self.instance_of(at_s, online, round_idx)
        after = self.state()
        self._restore(before)
        self._started = _Started(round_idx=round_idx, at_s=at_s, candidates=tuple(candidates), before=before,
                                 after=after, instance=instance,
                                 offline=tuple(name for name in candidates if name not in online),
                                 result=planner.start_plan(instance, round_idx))

    def take(self, round_idx: int, at_s: float, candidates: Sequence[str]) -> AheadPlan | None:
        """The plan started for this round if the round begins as it was started for (else
        ``None``: plan it now); taking it moves the generator and edge on as drawing its instance did.

        A plan the instance turned out infeasible for is ``None`` too: the round's own planning
        then waits for devices or reports the cover it cannot make, as it always does.
        """
        started, self._started = self._started, None
        if (started is None or (started.round_idx, started.at_s, started.candidates) != (round_idx, at_s, tuple(candidates))
                or self.state() != started.before):
            return None
        try:
            planned = started.result()
        except InfeasibleError:
            return None
        self._restore(started.after)
        return AheadPlan(instance=started.instance, planned=planned, offline=started.offline)
