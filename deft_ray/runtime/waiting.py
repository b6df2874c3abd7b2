"""Planning on the devices online, waiting in emulated time when they cannot cover the blocks.

A round (or a re-plan of lost blocks) plans only the devices online at its start. When those
cannot cover the blocks, and the devices offline could help, it waits for the next offline device
to come online and tries again (docs/architecture.md, "Failures and stragglers"). When even every
candidate device together cannot cover them, or none of the offline ones ever comes back, waiting
cannot help: that is a :class:`~deft_ray.runtime.recovery.CoverageError`, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from deft_ray.edge.availability import Availability
from deft_ray.planners import Instance, Plan
from deft_ray.runtime.recovery import CoverageError

#: Waits one plan may take before it gives up (a safeguard against a cover that never comes).
MAX_WAITS = 10_000


@dataclass(frozen=True, slots=True)
class OnlinePlan:
    """A plan of the devices online ``waited_s`` emulated seconds after the phase could first start."""

    instance: Instance
    """The instance planned: the devices online then."""
    plan: Plan
    waited_s: float
    offline: tuple[str, ...]
    """Candidates offline when it first tried (for the wait's event)."""


def plan_when_online(candidates: Sequence[str], availability: Availability, *, at_s: float,
                     instance_of: Callable[[float, Sequence[str]], Instance], plan: Callable[[Instance], Plan],
                     covers: Callable[[Instance], bool]) -> OnlinePlan:
    """Plan ``instance_of(time_s, online)`` on the ``candidates`` online at ``time_s``, from
    ``at_s`` on, waiting for devices to come online while the plan raises ``CoverageError``.

    ``covers(instance)`` says whether an instance can be covered at all (no events); it is asked of
    every candidate together once, before the first wait.
    """
    waited_s, offline, checked = 0.0, None, False
    for _ in range(MAX_WAITS):
        now_s = at_s + waited_s
        online = availability.online(candidates, now_s)
        offline = offline if offline is not None else tuple(n for n in candidates if n not in online)
        if online:
            instance = instance_of(now_s, online)
            try:
                return OnlinePlan(instance, plan(instance), waited_s, offline)
            except CoverageError:
                if len(online) == len(candidates):
                    raise
        later_s = availability.next_online_s(candidates, now_s)
        if later_s is None:
            raise CoverageError(f"{len(online)} of {len(candidates)} devices are online, too few to cover the blocks, "
                                "and none of the others ever comes online again.")
        if not checked and not covers(instance_of(now_s, candidates)):
            raise CoverageError(f"even all {len(candidates)} devices together, online or not, cannot cover the blocks, "
                                "so waiting for more to come online cannot help.")
        checked, waited_s = True, later_s - at_s
    raise CoverageError(f"the devices online did not cover the blocks in {MAX_WAITS} waits "
                        f"({waited_s:.1f} emulated s).")
