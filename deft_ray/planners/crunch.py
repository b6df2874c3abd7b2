"""CRUNCH: optimal block-device matching at given bandwidth (docs/method.md, "CRUNCH" and
"Problem 1: block allocation at given bandwidth")."""

from __future__ import annotations

import numpy as np

from deft_ray.errors import InfeasibleError
from deft_ray.planners.bandwidth import optimal_bandwidth_for
from deft_ray.planners.energy import least_floor_matching
from deft_ray.planners.instance import Instance
from deft_ray.planners.matching import bottleneck_matching
from deft_ray.planners.plan import pair_latency_s
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme, matching_allocation


def is_depth_monotone(latency_s: np.ndarray, feasible: np.ndarray) -> bool:
    """Whether every device's latency is non-increasing in the block index and its memory-feasible
    blocks form a suffix: the structure CRUNCH's counting check relies on."""
    return bool(np.all(np.diff(latency_s, axis=1) <= 0) and np.all(feasible[:, 1:] >= feasible[:, :-1]))


def crunch_matching(latency_s: np.ndarray, feasible: np.ndarray) -> np.ndarray | None:
    """Solve the bottleneck matching of a depth-monotone latency matrix (Cutting, RecoUNting,
    CHecking).

    Problem (P1): assign each of the N blocks to its own device among K, only where ``feasible``,
    minimising the largest ``latency_s[k, n]`` used.

    With each row non-increasing in n and feasible on a suffix, the blocks device k can serve within
    a threshold T form a suffix of length ``c_k(T)`` (*cutting* and *recounting*), and by Hall's
    theorem a complete matching exists iff the counts sorted in descending order satisfy
    ``c_(j) >= N - j`` for j = 0..N-1 (*checking*): the binding Hall sets are the prefixes
    {0..n}. Feasibility is monotone in T, so a binary search over the sorted candidate latencies
    finds the optimal T*; block j then goes to the device with the j-th largest count.

    Guarantee: exact optimum of P1 (``None`` when no matching exists at any threshold); pairs of
    infinite latency are never used.
    Complexity: O(KN log KN): the sort of the KN candidates, and O(log KN) checks of O(KN) each.

    Returns:
        ``device_of_block`` (length N), or ``None`` if infeasible.
    """
    num_blocks = latency_s.shape[1]
    feasible = feasible & np.isfinite(latency_s)
    memory_count = feasible.sum(axis=1)
    candidates = np.unique(latency_s[feasible])
    need = num_blocks - np.arange(num_blocks)

    def counts(threshold_s: float) -> np.ndarray:
        return np.minimum(memory_count, ((latency_s <= threshold_s) & feasible).sum(axis=1))

    def matchable(threshold_s: float) -> bool:
        top = np.sort(counts(threshold_s))[::-1][:num_blocks]
        return top.size == num_blocks and bool(np.all(top >= need))

    if candidates.size == 0 or not matchable(candidates[-1]):
        return None
    low, high = 0, candidates.size - 1  # invariant: candidates[high] is matchable
    while low < high:
        middle = (low + high) // 2
        if matchable(candidates[middle]):
            high = middle
        else:
            low = middle + 1
    order = np.argsort(-counts(candidates[high]), kind="stable")
    return order[:num_blocks]


def best_bottleneck_matching(latency_s: np.ndarray, feasible: np.ndarray) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The optimal bottleneck matching of ``latency_s`` by the fastest exact method: CRUNCH's
    counting check where the matrix is depth-monotone (:func:`is_depth_monotone`), the generic
    bipartite-matching check (:func:`~deft_ray.planners.matching.bottleneck_matching`) otherwise,
    which the notes then say. ``None`` when no matching of finite latency exists."""
    if is_depth_monotone(latency_s, feasible):
        return crunch_matching(latency_s, feasible), ()
    return bottleneck_matching(latency_s, feasible), (
        ("latency is not monotone in depth (block payloads differ); CRUNCH used a bipartite-matching check "
         "instead of counting"),)


@register_scheme
class Crunch(Scheme):
    """CRUNCH with every device given the fixed share ``bandwidth_hz / K`` (docs/method.md, "CRUNCH").

    Problem: P1 at equal shares. Depth-aware and optimal for the matching at that bandwidth; the
    bandwidth is not optimised. When the payloads differ so much between blocks that latency is no
    longer monotone in depth, the counting check does not hold, and the same threshold search runs
    with a bipartite matching check instead (still exact; said in the diagnostics).

    Energy budgets (docs/method.md, "Energy budgets"): a pair whose bandwidth floor is above the
    equal share would spend more than its device's budget, so it is cut (:func:`within_budget`);
    the threshold search over the remaining pairs is exact as before.

    Guarantee: the exact optimum of P1 at equal shares (with budgets, if any).
    Complexity: O(KN log KN) (plus O(KN I) for the floors, I Newton steps of the rate inverse).

    Raises:
        InfeasibleError: no matching of finite latency exists.
    """

    name = "crunch"
    plans_energy_budgets = True
    summary = "optimal depth-aware matching (CRUNCH) at equal bandwidth shares B/K"

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        share = instance.equal_shares_hz()
        device_of_block, notes = best_bottleneck_matching(pair_latency_s(instance, share), within_budget(instance, share))
        if device_of_block is None:
            budgets = " within the devices' energy budgets" if instance.has_energy_budgets else ""
            raise InfeasibleError(f"crunch: no matching finishes every block in finite time{budgets} at equal shares; "
                                  "some devices' rates are too low; add devices or bandwidth, or use scheme exact")
        return matching_allocation(device_of_block, share, notes)


def within_budget(instance: Instance, bandwidth_hz: np.ndarray) -> np.ndarray:
    """``(K, N)`` pairs that hold in memory and keep within the energy budget at the devices'
    ``bandwidth_hz``: the energy is falling in the bandwidth, so that is ``b_k >= floor_kn``."""
    return instance.memory_feasible() & (instance.bandwidth_floor_hz() <= np.asarray(bandwidth_hz)[:, None])


def start_matching(instance: Instance, scheme: str) -> tuple[np.ndarray, float, np.ndarray]:
    """The start of ``exact`` and ``jbba``: CRUNCH's equal-share matching (or, when energy
    budgets leave none at equal shares, the matching of least bandwidth floors), its optimal
    latency and bandwidth ``(K,)``.

    Raises:
        InfeasibleError: no matching finishes every block in finite time (within budgets).
    """
    start, _ = best_bottleneck_matching(pair_latency_s(instance, instance.equal_shares_hz()),
                                        within_budget(instance, instance.equal_shares_hz()))
    if start is None and instance.has_energy_budgets:
        start = least_floor_matching(instance)
    if start is not None:
        latency, bandwidth = optimal_bandwidth_for(instance, start)
        if np.isfinite(latency[0]):
            return start, float(latency[0]), bandwidth[0]
    raise InfeasibleError(f"{scheme}: no matching finishes every block in finite time; add devices or bandwidth")
