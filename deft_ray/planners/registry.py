"""Schemes by name, and :func:`solve`, the one way to turn an instance into a :class:`Plan`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from deft_ray.errors import InputError, UnknownNameError
from deft_ray.planners.energy import check_energy_feasible
from deft_ray.planners.feasibility import (
    check_matching_feasible,
    make_monotone,
    usable_devices,
)
from deft_ray.planners.instance import Instance
from deft_ray.planners.plan import Evaluation, Plan, evaluate
from deft_ray.planners.scheme import Scheme

_SCHEMES: dict[str, type[Scheme]] = {}
_ALIASES: dict[str, str] = {}
SchemeType = TypeVar("SchemeType", bound=type[Scheme])


def register_scheme(cls: SchemeType) -> SchemeType:
    """Class decorator: make ``cls`` available under ``cls.name`` and each of ``cls.aliases``."""
    for name in (cls.name, *cls.aliases):
        if (name in _SCHEMES and _SCHEMES[name] is not cls) or (name in _ALIASES and _ALIASES[name] != cls.name):
            raise ValueError(f"scheme name {name!r} is registered twice")
    _SCHEMES[cls.name] = cls
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    return cls


def scheme_names(*, aliases: bool = True) -> list[str]:
    """The registered scheme names in registration order, then (unless ``aliases=False``) the
    aliases kept for old names (``exact-bisection`` and ``optimal`` for ``exact``)."""
    return list(_SCHEMES) + (list(_ALIASES) if aliases else [])


def scheme_aliases() -> dict[str, str]:
    """Each alias and the scheme it names."""
    return dict(_ALIASES)


def get_scheme(name: str, **options) -> Scheme:
    """The scheme registered as ``name`` (or aliased to it), built with ``options``.

    Raises:
        UnknownNameError: listing the valid names.
    """
    canonical = _ALIASES.get(name, name)
    if canonical not in _SCHEMES:
        raise UnknownNameError("scheme", name, scheme_names())
    return _SCHEMES[canonical](**options)


def solve(instance: Instance, scheme: str | Scheme = "jbba", *, seed: int = 0,
          clock: Callable[[], float] = time.perf_counter) -> Plan:
    """Plan one round of ``instance`` with ``scheme``.

    The profile is first made monotone in depth (noted in the plan's diagnostics), the devices that
    cannot finish a block in finite time are left out (noted too), the instance is mapped to the
    scheme's :meth:`~Scheme.cost_instance`, the matching's feasibility is checked for
    one-block-per-device schemes, and the allocation is scored with :func:`evaluate` on that same
    instance (a block may go to several devices when the scheme ``replicates_blocks``).
    ``solve_time_s`` covers the scheme alone. The plan's ``scheme`` is the name asked for (an alias
    stays an alias).

    With energy budgets (docs/method.md, "Energy budgets") only schemes that ``plans_energy_budgets``
    may plan, and a matching within every budget must exist.

    Raises:
        InfeasibleError: no allocation of the scheme's kind exists (within the energy budgets), with the reason.
        InputError: a derived quantity of the instance overflows the float range, or the scheme does
            not plan with the instance's energy budgets.
        UnknownNameError: an unknown scheme name.
    """
    planner = get_scheme(scheme) if isinstance(scheme, str) else scheme
    name = scheme if isinstance(scheme, str) else planner.name
    costed, notes = planning_instance(instance, planner)
    if planner.one_block_per_device:
        check_matching_feasible(costed)
    if costed.has_energy_budgets:
        if not planner.plans_energy_budgets:
            able = ", ".join(name for name, cls in _SCHEMES.items() if cls.plans_energy_budgets)
            raise InputError("scheme", name, "does not plan with energy budgets (devices' energy_budget_j)",
                             f"use one of {able}, or give no energy budget")
        check_energy_feasible(costed)
    start = clock()
    allocation = planner.allocate(costed, seed=seed)
    solve_time_s = clock() - start

    names = costed.device_names
    assignment = {names[k]: tuple(blocks) for k, blocks in sorted(allocation.blocks_of_device.items())}
    bandwidth = {names[k]: float(allocation.bandwidth_hz[k]) for k in sorted(allocation.blocks_of_device)}
    draft = Plan(scheme=name, assignment=assignment, bandwidth_hz=bandwidth,
                 device_latency_s={}, round_latency_s=0.0, solve_time_s=solve_time_s)
    scored = _score(costed, draft, planner)
    assert scored.feasible, f"scheme {planner.name} returned an infeasible plan: {scored.violations}"
    return Plan(
        scheme=name,
        assignment=assignment,
        bandwidth_hz=bandwidth,
        device_latency_s=dict(scored.device_latency_s),
        round_latency_s=scored.round_latency_s,
        solve_time_s=solve_time_s,
        diagnostics=notes + allocation.diagnostics,
        device_energy_j=dict(scored.energy_j),
    )


def planning_instance(instance: Instance, scheme: Scheme) -> tuple[Instance, tuple[str, ...]]:
    """The instance ``scheme`` plans and is scored on: ``instance`` made monotone in depth, without
    the devices that cannot finish a block in finite time, mapped through
    :meth:`Scheme.cost_instance`; and the notes of those steps."""
    monotone, notes = make_monotone(instance)
    usable, dropped = usable_devices(scheme.cost_instance(monotone))
    return usable, notes + dropped


def score(instance: Instance, plan: Plan, scheme: str | Scheme) -> Evaluation:
    """Score ``plan`` of ``scheme`` on the raw ``instance`` as :func:`solve` did: on its
    :func:`planning_instance`, with the scheme's coverage rule. Use it (not a bare
    :func:`evaluate`) to show per-device compute and upload times of any scheme's plan."""
    planner = get_scheme(scheme) if isinstance(scheme, str) else scheme
    return _score(planning_instance(instance, planner)[0], plan, planner)


def _score(costed: Instance, plan: Plan, planner: Scheme) -> Evaluation:
    return evaluate(costed, plan, max_blocks_per_device=1 if planner.one_block_per_device else None,
                    replicated=planner.replicates_blocks)
