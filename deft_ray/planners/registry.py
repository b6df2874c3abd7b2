"""Schemes by name, and :func:`solve`, the one way to turn an instance into a :class:`Plan`."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from deft_ray.errors import UnknownNameError
from deft_ray.planners.problem import (Evaluation, Instance, Plan, check_matching_feasible, evaluate,
                                       make_monotone)
from deft_ray.planners.scheme import Scheme

_SCHEMES: dict[str, type[Scheme]] = {}
SchemeType = TypeVar("SchemeType", bound=type[Scheme])


def register_scheme(cls: SchemeType) -> SchemeType:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in _SCHEMES and _SCHEMES[cls.name] is not cls:
        raise ValueError(f"scheme name {cls.name!r} is registered twice")
    _SCHEMES[cls.name] = cls
    return cls


def scheme_names() -> list[str]:
    """The registered scheme names, in registration order."""
    return list(_SCHEMES)


def get_scheme(name: str, **options) -> Scheme:
    """The scheme registered as ``name``, built with ``options``.

    Raises:
        UnknownNameError: listing the valid names.
    """
    if name not in _SCHEMES:
        raise UnknownNameError("scheme", name, scheme_names())
    return _SCHEMES[name](**options)


def solve(instance: Instance, scheme: str | Scheme = "jbba", *, seed: int = 0,
          clock: Callable[[], float] = time.perf_counter) -> Plan:
    """Plan one round of ``instance`` with ``scheme``.

    The profile is first made monotone in depth (noted in the plan's diagnostics) and mapped to the
    scheme's :meth:`~Scheme.cost_instance`, the matching's feasibility is checked for
    one-block-per-device schemes, and the allocation is scored with :func:`evaluate` on that same
    instance (a block may go to several devices when the scheme ``replicates_blocks``).
    ``solve_time_s`` covers the scheme alone.

    Raises:
        InfeasibleError: no allocation of the scheme's kind exists, with the reason.
        UnknownNameError: an unknown scheme name.
    """
    planner = get_scheme(scheme) if isinstance(scheme, str) else scheme
    costed, notes = planning_instance(instance, planner)
    if planner.one_block_per_device:
        check_matching_feasible(costed)
    start = clock()
    allocation = planner.allocate(costed, seed=seed)
    solve_time_s = clock() - start

    names = costed.device_names
    assignment = {names[k]: tuple(blocks) for k, blocks in sorted(allocation.blocks_of_device.items())}
    bandwidth = {names[k]: float(allocation.bandwidth_hz[k]) for k in sorted(allocation.blocks_of_device)}
    draft = Plan(scheme=planner.name, assignment=assignment, bandwidth_hz=bandwidth,
                 device_latency_s={}, round_latency_s=0.0, solve_time_s=solve_time_s)
    scored = _score(costed, draft, planner)
    assert scored.feasible, f"scheme {planner.name} returned an infeasible plan: {scored.violations}"
    return Plan(
        scheme=planner.name,
        assignment=assignment,
        bandwidth_hz=bandwidth,
        device_latency_s=dict(scored.device_latency_s),
        round_latency_s=scored.round_latency_s,
        solve_time_s=solve_time_s,
        diagnostics=notes + allocation.diagnostics,
    )


def planning_instance(instance: Instance, scheme: Scheme) -> tuple[Instance, tuple[str, ...]]:
    """The instance ``scheme`` plans and is scored on: ``instance`` made monotone in depth, then
    mapped through :meth:`Scheme.cost_instance`; and the notes of the smoothing."""
    monotone, notes = make_monotone(instance)
    return scheme.cost_instance(monotone), notes


def score(instance: Instance, plan: Plan, scheme: str | Scheme) -> Evaluation:
    """Score ``plan`` of ``scheme`` on the raw ``instance`` as :func:`solve` did: on its
    :func:`planning_instance`, with the scheme's coverage rule. Use it (not a bare
    :func:`evaluate`) to show per-device compute and upload times of any scheme's plan."""
    planner = get_scheme(scheme) if isinstance(scheme, str) else scheme
    return _score(planning_instance(instance, planner)[0], plan, planner)


def _score(costed: Instance, plan: Plan, planner: Scheme) -> Evaluation:
    return evaluate(costed, plan, max_blocks_per_device=1 if planner.one_block_per_device else None,
                    replicated=planner.replicates_blocks)
