"""Exact solvers (docs/method.md, "The exact solver"): the ground truth for JBBA and multiblock.

- ``exact`` (aliases ``exact-bisection``, ``optimal``): the joint optimum of P2 at any size.
- ``optimal-sets``: every assignment of blocks to devices when a device may take several blocks
  (the ground truth for ``multiblock``); for small instances.
"""

from __future__ import annotations

import numpy as np

from deft_ray.errors import TooLargeError
from deft_ray.planners.bandwidth import (
    bandwidth_needed_hz,
    cheapest_matching,
    optimal_bandwidth_for,
)
from deft_ray.planners.crunch import start_matching
from deft_ray.planners.feasibility import check_every_block_fits
from deft_ray.planners.instance import Instance
from deft_ray.planners.matching import MAX_ENUMERATED_MATCHINGS
from deft_ray.planners.multiblock import equalize_sets, set_costs
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme, matching_allocation

#: Relative bandwidth saving below which a cheaper assignment is taken as no improvement.
_SAVING_TOLERANCE = 1e-10


@register_scheme
class Exact(Scheme):
    """Exact joint optimum of P2 at any size (deft-ray's addition to the paper's methods).

    Problem (P2, docs/method.md "Problem 2: joint block and bandwidth allocation"): choose the
    matching and the shares ``B_k`` (summing to at most ``B``) minimising the round latency ``T``.

    Method: for a target ``T``, device k can train block n by ``T`` iff it gets at least
    ``need_kn(T)``, the bandwidth that makes ``compute_kn + payload_n / R_k(B) = T`` (infinite if
    ``T <= compute_kn``, beyond capacity, or if memory forbids the pair), and every ``need_kn``
    falls as ``T`` grows. Start from CRUNCH's equal-share matching with its optimal
    (latency-equalising) bandwidth, at latency ``T_0``. At the current matching's latency ``T_i``
    its needs sum to ``B``; the minimum-sum assignment of ``need(T_i)`` (Hungarian method) either
    sums to ``B`` too, and then no matching reaches any ``T < T_i`` (its needs would all be larger),
    so ``T_i`` is optimal; or it sums to less, and its own equalising bandwidth gives a strictly
    smaller ``T_{i+1}``. Each step is a Newton-like (Dinkelbach) step on ``T``, so a handful of
    Hungarian solves reach the optimum, where bisection needs about 30.

    Pruning: only pairs with ``compute_kn < T_i`` can serve, and for each block only its N devices
    of smallest need can matter (among them at least one is free of the other N - 1 blocks, and
    moving the block there never raises the sum), so each Hungarian solve has at most N^2 columns.

    Energy budgets (docs/method.md, "Energy budgets"): a budget gives each pair a bandwidth floor,
    so ``need_kn(T)`` becomes ``max(need_kn(T), floor_kn)``, still non-increasing in ``T``, and a
    pair whose floor exceeds ``B`` is cut; the argument above holds unchanged. When no matching is
    feasible at equal shares the start is the matching of least floors instead.

    Guarantee: the optimum of P2 (with budgets, if any), to a relative 1e-10 in bandwidth (about
    1e-10 in ``T``).
    Complexity: O(S (K N I + N^3)) for S steps (typically 2-5), I Newton steps of the bandwidth
    inverse; O(KN log KN) for the CRUNCH start.

    Raises:
        InfeasibleError: no matching finishes every block in finite time (within budgets).
    """

    name = "exact"
    plans_energy_budgets = True
    aliases = ("exact-bisection", "optimal")
    summary = "exact joint optimum at any size: Newton steps on T with a pruned min-sum bandwidth assignment"

    def __init__(self, *, max_steps: int = 1000):
        self.max_steps = max_steps

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        num_blocks, total_hz = instance.num_blocks, instance.bandwidth_hz
        compute = instance.compute_matrix_s()
        feasible = instance.pair_feasible()
        floor = instance.bandwidth_floor_hz() if instance.has_energy_budgets else None
        payload = instance.block_payload_bits()
        channel = instance.channel()
        blocks = np.arange(num_blocks)

        start, latency, bandwidth = start_matching(instance, "exact")
        best_s, best, best_bandwidth = float(latency), start, bandwidth
        steps = 0
        for steps in range(1, self.max_steps + 1):
            match = cheapest_matching(channel, compute, feasible, payload, best_s, total_hz, floor)
            if match is None:
                break
            need = bandwidth_needed_hz(channel.take(match), compute[match, blocks], payload, best_s,
                                       0.0 if floor is None else floor[match, blocks]).sum()
            if not need < total_hz * (1 - _SAVING_TOLERANCE):
                break
            latency, bandwidth = optimal_bandwidth_for(instance, match)
            if not latency[0] < best_s:
                break
            best_s, best, best_bandwidth = float(latency[0]), match, bandwidth[0]
        return matching_allocation(best, best_bandwidth, (f"exact: optimum after {steps} assignment step(s)",))


@register_scheme
class OptimalSets(Scheme):
    """Exact optimum when a device may train several blocks, by exhaustive search.

    Problem: that of ``multiblock`` (docs/method.md, "Multiblock": a set costs its lowest block's
    compute and memory and the sum of its payloads). Every assignment of the N
    blocks to the K devices (K^N of them, a device may take none) whose sets fit in memory gets its
    optimal (latency-equalising) bandwidth, and the best is returned. Assignments are enumerated in
    chunks; one that needs more than the whole band at the best latency found so far cannot beat it,
    so only the others are equalised.

    Guarantee: the optimum, to the root search's tolerance. For small instances only
    (K^N <= 200,000); it is the ground truth ``multiblock`` is measured against.
    Complexity: O(K^N * N K) to enumerate and screen, plus O(M K I) for the M assignments equalised.

    Raises:
        TooLargeError: K^N is above 200,000.
        InfeasibleError: a block fits no device's memory.
    """

    name = "optimal-sets"
    summary = "exact optimum when a device may take several blocks: every assignment (small instances only)"
    one_block_per_device = False

    #: Assignments enumerated and screened at a time.
    chunk_size = 20_000

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        num_devices, num_blocks = instance.num_devices, instance.num_blocks
        check_every_block_fits(instance)
        total = num_devices ** num_blocks
        if total > MAX_ENUMERATED_MATCHINGS:
            raise TooLargeError(
                f"optimal-sets: K={num_devices}, N={num_blocks} has {total:.3g} assignments (K^N), above the "
                f"limit of {MAX_ENUMERATED_MATCHINGS}; use scheme 'multiblock'")
        feasible = instance.memory_feasible()
        digits = num_devices ** np.arange(num_blocks)
        best_latency_s, best_assignment, best_bandwidth = np.inf, None, None
        num_solved = 0
        for begin in range(0, total, self.chunk_size):
            codes = np.arange(begin, min(begin + self.chunk_size, total))
            assignments = (codes[:, None] // digits) % num_devices
            assignments = assignments[feasible[assignments, np.arange(num_blocks)].all(axis=1)]
            compute, _, payload = set_costs(instance, assignments)
            if np.isfinite(best_latency_s):
                channel = instance.channel().take(np.arange(num_devices))
                need = np.where(payload > 0, bandwidth_needed_hz(channel, compute, payload, best_latency_s), 0.0)
                keep = need.sum(axis=1) < instance.bandwidth_hz
                assignments, compute, payload = assignments[keep], compute[keep], payload[keep]
            if not len(assignments):
                continue
            latency, bandwidth = equalize_sets(instance, compute, payload)
            num_solved += len(assignments)
            best = int(np.argmin(latency))
            if latency[best] < best_latency_s:
                best_latency_s, best_assignment, best_bandwidth = latency[best], assignments[best], bandwidth[best]
        blocks_of_device = {int(k): tuple(int(n) for n in np.flatnonzero(best_assignment == k))
                            for k in np.unique(best_assignment)}
        return Allocation(blocks_of_device=blocks_of_device, bandwidth_hz=best_bandwidth,
                          diagnostics=(f"optimal-sets: {total} assignments enumerated, {num_solved} equalised",))
