"""Exact solvers of the joint problem P2 (PAPER.md section 6, B7): ground truth for JBBA.

- ``optimal``: every matching, each with its optimal bandwidth; for small instances.
- ``exact-bisection``: the joint optimum at any size, by bisection on the round latency.
- ``optimal-sets``: every assignment of blocks to devices when a device may take several blocks
  (the ground truth for ``multiblock``); for small instances.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from deft_ray.errors import TooLargeError
from deft_ray.planners.bandwidth import bandwidth_needed_hz, optimal_bandwidth_for
from deft_ray.planners.matching import MAX_ENUMERATED_MATCHINGS, bottleneck_matching, enumerate_matchings
from deft_ray.planners.multiblock import check_every_block_fits, equalize_sets, set_costs
from deft_ray.planners.problem import Instance, pair_latency_s
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme, matching_allocation


@register_scheme
class Optimal(Scheme):
    """Exact joint optimum of P2 by exhaustive search: every feasible matching, each with its
    optimal (latency-equalising) bandwidth. For small instances only (K!/(K-N)! <= 200,000).

    Complexity: O(K!/(K-N)! * N * I).
    """

    name = "optimal"
    summary = "exact joint optimum by enumerating every matching (small instances only)"

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        matchings = enumerate_matchings(instance.memory_feasible())
        latency, bandwidth = optimal_bandwidth_for(instance, matchings)
        best = int(np.argmin(latency))
        return matching_allocation(matchings[best], bandwidth[best],
                                   (f"enumerated {len(matchings)} feasible matchings",))


@register_scheme
class ExactBisection(Scheme):
    """Exact joint optimum of P2 at any size (deft-ray's addition to the paper's methods).

    For a target round latency T, device k can train block n by T iff it gets at least
    ``need_kn(T)`` of bandwidth, the bandwidth that makes ``compute_kn + payload_n / R_k(B) = T``
    (infinite if T <= compute_kn or beyond capacity, or if memory forbids the pair). So T is
    achievable iff the minimum-sum assignment of ``need(T)`` (Hungarian method) fits in the total
    bandwidth. Every ``need_kn`` falls as T grows, so achievability is monotone in T, and a
    bisection between a lower bound and CRUNCH's equal-share latency finds the optimum; the final
    matching gets its equalising bandwidth.

    Guarantee: the optimum of P2 to a relative tolerance of 1e-9 in T.
    Complexity: O(log(1/tol) * N^2 K).
    """

    name = "exact-bisection"
    summary = "exact joint optimum at any size: bisection on T with a min-sum bandwidth assignment"

    def __init__(self, *, relative_tolerance: float = 1e-9):
        self.relative_tolerance = relative_tolerance

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        compute = instance.compute_matrix_s()
        feasible = instance.memory_feasible()
        payload = np.broadcast_to(instance.block_payload_bits()[None, :], compute.shape)
        channel = instance.channel().take(np.arange(instance.num_devices)[:, None])
        infinite_need = 1e6 * instance.bandwidth_hz

        def cheapest_matching(target_s: float) -> tuple[float, np.ndarray]:
            need = np.where(feasible, bandwidth_needed_hz(channel, compute, payload, target_s), np.inf)
            need = np.minimum(need, infinite_need)
            blocks, devices = linear_sum_assignment(need.T)
            return float(need.T[blocks, devices].sum()), devices

        share = np.full(instance.num_devices, instance.bandwidth_hz / instance.num_devices)
        equal = pair_latency_s(instance, share)
        start = bottleneck_matching(equal, feasible)
        high = float(equal[start, np.arange(instance.num_blocks)].max())
        low = float(np.where(feasible, compute, np.inf).min(axis=0).max())
        best = cheapest_matching(high)[1]
        while high - low > self.relative_tolerance * high:
            middle = 0.5 * (low + high)
            total_hz, devices = cheapest_matching(middle)
            if total_hz <= instance.bandwidth_hz:
                high, best = middle, devices
            else:
                low = middle
        _, bandwidth = optimal_bandwidth_for(instance, best)
        return matching_allocation(best, bandwidth[0])


@register_scheme
class OptimalSets(Scheme):
    """Exact optimum when a device may train several blocks, by exhaustive search.

    Problem: that of ``multiblock`` (PAPER.md section 9, A3; a set costs its lowest block's compute
    and memory and the sum of its payloads, DESIGN.md "Measured facts"). Every assignment of the N
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
