"""Exact solvers of the joint problem P2 (PAPER.md section 6, B7): ground truth for JBBA.

- ``optimal``: every matching, each with its optimal bandwidth; for small instances.
- ``exact-bisection``: the joint optimum at any size, by bisection on the round latency.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from deft_ray.planners.bandwidth import bandwidth_needed_hz, optimal_bandwidth_for
from deft_ray.planners.matching import bottleneck_matching, enumerate_matchings
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
