"""The order a round's work goes out in: the dearest first, or a split over the cores replayed
when it is predicted to finish sooner.

A bounded pool hands each freed core the next job in this order (list scheduling), so the order
decides how long the round's last jobs leave a core idle (docs/architecture.md, "Packed devices
and bounded concurrency"). Emulated time does not depend on it, only wall time does.
"""

from __future__ import annotations

import heapq
import statistics
from typing import Any, Mapping

import numpy as np

MAX_SPLITS = 1 << 12
"""Most splits of the jobs over the cores (cores ** jobs) tried in full."""
MIN_GAIN = 0.01
"""A split replaces the dearest-first order only when predicted to finish at least this much sooner."""


def host_costs(orders: Mapping[str, Any], padded_lengths: Mapping[str, int]) -> dict[str, float]:
    """What each order costs this host, in the profile's seconds times tokens per example.

    That is its ``profile_compute_s`` (the profile's cost of its blocks, without the device's
    emulated speed, which only the virtual clock charges; ``planned_compute_s`` where that is not
    known) times the length its next batch is cut to (``padded_lengths``, reported with each
    upload), since a batch of short sentences costs a fraction of one of long ones. A device
    whose next length is not known counts at the median of those that are.
    """
    known = [padded_lengths[name] for name in orders if name in padded_lengths]
    typical = statistics.median(known) if known else 1

    def cost(order: Any, name: str) -> float:
        host_s = order.planned_compute_s if order.profile_compute_s is None else order.profile_compute_s
        return host_s * padded_lengths.get(name, typical)

    return {name: cost(order, name) for name, order in orders.items()}


def dearest_first(orders: Mapping[str, Any], padded_lengths: Mapping[str, int]) -> list[str]:
    """The devices of ``orders``, the dearest (:func:`host_costs`) first: longest processing time
    first, which keeps every core busy until near the end of the round."""
    costs = host_costs(orders, padded_lengths)
    return sorted(costs, key=lambda name: -costs[name])


def dispatch_order(orders: Mapping[str, Any], padded_lengths: Mapping[str, int], cores: int | None) -> list[str]:
    """The devices of ``orders`` in the order their work goes out to ``cores`` cores.

    Dearest first, unless the jobs are few enough to try every split of them over the cores
    (``cores ** jobs`` at most :data:`MAX_SPLITS`) and the best split's predicted finish beats
    dearest-first list scheduling's by :data:`MIN_GAIN` or more. Then the order replays that
    split: each core takes its own jobs dearest first, and the order is the one in which the
    cores come free on the predicted costs. Six jobs on two cores are typical of a DEFT round, and
    there dearest first leaves one core idle for the last few percent of the round more often
    than the best split does. The gain threshold keeps the dearest-first order where the predicted
    costs (good to a few percent) cannot tell the two apart.
    """
    first = dearest_first(orders, padded_lengths)
    if cores is None or cores < 2 or len(first) <= cores or cores ** len(first) > MAX_SPLITS:
        return first
    costs = host_costs(orders, padded_lengths)
    work = np.array([costs[name] for name in first])
    split, split_s = best_split(work, cores)
    if split_s > (1 - MIN_GAIN) * list_schedule_s(work, cores):
        return first
    return [first[job] for job in replay(work, split, cores)]


def best_split(work: np.ndarray, cores: int) -> tuple[np.ndarray, float]:
    """The core of each job in the split that finishes soonest, every split tried, and its finish.

    Complexity: O(cores ** jobs * jobs)."""
    jobs = len(work)
    splits = (np.arange(cores ** jobs)[:, None] // cores ** np.arange(jobs)) % cores
    loads = np.stack([(splits == core) @ work for core in range(cores)], axis=1)
    finish = loads.max(axis=1)
    best = int(np.argmin(finish))
    return splits[best], float(finish[best])


def list_schedule_s(work: np.ndarray, cores: int) -> float:
    """When ``work``, given in this order to whichever core comes free first, is done."""
    free = [0.0] * cores
    for cost in work:
        heapq.heappush(free, heapq.heappop(free) + float(cost))
    return max(free)


def replay(work: np.ndarray, split: np.ndarray, cores: int) -> list[int]:
    """The jobs in the order list scheduling must see them to reproduce ``split`` on these costs:
    each core's jobs dearest first, handed out as the cores come free (the earliest first)."""
    queues = [sorted(np.flatnonzero(split == core), key=lambda job: -work[job]) for core in range(cores)]
    free = [0.0] * cores
    order = []
    while any(queues):
        core = min((c for c in range(cores) if queues[c]), key=lambda c: (free[c], c))
        job = queues[core].pop(0)
        order.append(int(job))
        free[core] += float(work[job])
    return order
