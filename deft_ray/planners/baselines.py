"""Baseline schemes (docs/method.md, "Baselines"), scored with the same cost model as CRUNCH/JBBA.

Each matching baseline gives devices the equal share ``B / K`` like ``crunch``; its ``-bw``
variant keeps the same matching and gives it the optimal (latency-equalising) bandwidth instead,
which isolates the gain of depth-aware block allocation from that of bandwidth allocation.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from deft_ray.errors import InfeasibleError
from deft_ray.planners.bandwidth import optimal_bandwidth_for
from deft_ray.planners.instance import Instance
from deft_ray.planners.matching import bottleneck_matching
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme, matching_allocation


class MatchingBaseline(Scheme):
    """A one-block-per-device baseline: :meth:`match` picks the matching, the bandwidth is the
    equal share, or optimal for that matching when ``optimize_bandwidth`` is set.

    Problem: P1 (or P2 for the ``-bw`` variants) solved by a rule, not optimally: these are the
    comparisons of docs/method.md, "Baselines". Guarantee: a feasible matching.
    Complexity: that of :meth:`match` (O(N K) to O(KN log KN)), plus O(N I) for the ``-bw``
    bandwidth.
    """

    optimize_bandwidth: ClassVar[bool] = False

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        device_of_block = self.match(instance, np.random.default_rng(seed))
        if self.optimize_bandwidth:
            bandwidth = optimal_bandwidth_for(instance, device_of_block)[1][0]
        else:
            bandwidth = instance.equal_shares_hz()
        return matching_allocation(device_of_block, bandwidth)

    @abstractmethod
    def match(self, instance: Instance, rng: np.random.Generator) -> np.ndarray:
        """``device_of_block``: a memory-feasible matching."""


@register_scheme
class RandomMatching(MatchingBaseline):
    """B3: a seeded random memory-feasible matching (min-sum assignment of random costs)."""

    name = "random"
    summary = "random memory-feasible matching, equal bandwidth shares"

    def match(self, instance, rng):
        cost = np.where(instance.memory_feasible(), rng.random((instance.num_devices, instance.num_blocks)), np.inf)
        blocks, devices = linear_sum_assignment(cost.T)
        return devices[np.argsort(blocks)]


@register_scheme
class Greedy(MatchingBaseline):
    """B4: blocks from the most expensive (block 0) down, each to the fastest free device that can
    hold it, fastest meaning the smallest compute scale (ties: the better channel). O(N K).

    It ranks devices by compute alone, as a classic scheduler would. Ranking them instead by each
    pair's full latency at the equal share would be exact for the matching problem: with latency
    monotone in depth for every device and nested memory sets, an exchange argument shows that
    giving each block, deepest first, to the free device that finishes it soonest is optimal
    (swapping it into any optimal matching never raises the bottleneck). That is CRUNCH's optimum,
    so it is no baseline; tests use it as a second oracle for CRUNCH.
    """

    name = "greedy"
    summary = "most expensive block to the fastest-computing free device, equal bandwidth shares"

    def match(self, instance, rng):
        rate = instance.channel().rate_bps(instance.equal_shares_hz())
        order = np.lexsort((-rate, instance.compute_scales()))  # by compute scale, then channel
        feasible = instance.memory_feasible()
        free = np.ones(instance.num_devices, dtype=bool)
        device_of_block = np.empty(instance.num_blocks, dtype=int)
        for block in range(instance.num_blocks):
            device = next(int(k) for k in order if free[k] and feasible[k, block])
            device_of_block[block] = device
            free[device] = False
        return device_of_block


@register_scheme
class DepthUnaware(MatchingBaseline):
    """B1: classic computation offloading, the comparison of the paper's conference version.

    Every block is costed the same (the mean compute time and payload), so the scheme picks the
    N devices that finish a *typical* block soonest (a bottleneck assignment on those uniform
    costs, memory respected), but which of them gets which block ignores depth."""

    name = "depth-unaware"
    summary = "offloading-style: every block costed alike, depth ignored, equal bandwidth shares"

    def match(self, instance, rng):
        rate = instance.channel().rate_bps(instance.equal_shares_hz())
        uniform = (instance.compute_scales() * instance.block_compute_s().mean()
                   + instance.block_payload_bits().mean() / rate)
        latency = np.broadcast_to(uniform[:, None], (instance.num_devices, instance.num_blocks))
        return bottleneck_matching(np.ascontiguousarray(latency), instance.memory_feasible())


@register_scheme
class RandomMatchingBw(RandomMatching):
    name = "random-bw"
    summary = "random matching with optimal bandwidth for it"
    optimize_bandwidth = True


@register_scheme
class GreedyBw(Greedy):
    name = "greedy-bw"
    summary = "greedy matching with optimal bandwidth for it"
    optimize_bandwidth = True


@register_scheme
class DepthUnawareBw(DepthUnaware):
    name = "depth-unaware-bw"
    summary = "depth-unaware matching with optimal bandwidth for it"
    optimize_bandwidth = True


@register_scheme
class SingleDevice(Scheme):
    """B2: conventional fine-tuning on one device: the device that finishes soonest trains every
    block (compute and memory of its deepest block, docs/method.md "Cost model") and uploads all of
    them with the whole band. Guarantee: the best single device under that cost. Complexity: O(K N).

    Raises:
        InfeasibleError: no device holds every block.
    """

    name = "single-device"
    summary = "the strongest device that fits trains every block, with the whole band"
    one_block_per_device = False

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        needed = instance.block_memory_bytes().max()
        budgets = instance.memory_budgets()
        fits = budgets >= needed
        if not fits.any():
            best = int(np.argmax(budgets))
            raise InfeasibleError(
                f"single-device: training every block needs {needed:.4g} bytes but the largest budget is "
                f"{budgets[best]:.4g} bytes (device {instance.devices[best].name!r}); raise that budget")
        rate = instance.channel().rate_bps(np.full(instance.num_devices, instance.bandwidth_hz))
        latency = (instance.compute_scales() * instance.block_compute_s().max()
                   + instance.block_payload_bits().sum() / rate)
        device = int(np.argmin(np.where(fits, latency, np.inf)))
        bandwidth = np.zeros(instance.num_devices)
        bandwidth[device] = instance.bandwidth_hz
        return Allocation(blocks_of_device={device: tuple(range(instance.num_blocks))}, bandwidth_hz=bandwidth)
