"""Multi-block planning: a device may train a *set* of blocks (docs/method.md, "Multiblock").

The paper's problem P2 (docs/method.md, "Problem 2: joint block and bandwidth allocation") gives
each device at most one block, so it needs ``K >= N`` devices. What a set costs was measured
(docs/method.md, "Cost model"): the backward pass must reach the set's lowest block anyway, so a
device training the block set ``S`` takes ``compute_scale_k * max_{n in S} compute_s_n`` seconds
and ``max_{n in S} memory_bytes_n`` bytes, and uploads ``sum_{n in S} payload_bits_n``. Dropping
the one-block constraint gives the problem solved here, for any K and N:

    min_{S_1..S_K, B_1..B_K}  max_k  compute_scale_k * max_{n in S_k} compute_s_n
                                     + sum_{n in S_k} payload_bits_n / R_k(B_k)
    s.t.  the S_k partition the blocks (a set may be empty: the device sits out),
          max_{n in S_k} memory_bytes_n <= memory_bytes_k,   sum_k B_k <= B.

For fixed sets, the optimal bandwidth equalises the finishing times of the involved devices
(:func:`~deft_ray.planners.bandwidth.equalize_bandwidth`). :func:`set_costs` and
:func:`equalize_sets` cost and equalise a batch of assignments; the exhaustive ``optimal-sets``
scheme (``exact.py``) shares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deft_ray.errors import InfeasibleError
from deft_ray.planners.bandwidth import bandwidth_needed_hz, equalize_bandwidth
from deft_ray.planners.feasibility import (
    check_every_block_fits,
    check_matching_feasible,
    make_monotone,
)
from deft_ray.planners.instance import Instance
from deft_ray.planners.jbba import Jbba
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme

#: Relative improvement a move must bring to be taken (guards against cycling on rounding noise).
_IMPROVEMENT = 1e-12
#: Relative bandwidth slack a move must free, at the current latency, to be evaluated exactly.
_SCREEN_SLACK = 1e-9
#: Relative step of the finite difference that estimates how fast the bandwidth need falls with T.
_SLOPE_STEP = 1e-6
#: Move kinds: one block to another device, two blocks exchanged, two devices' sets exchanged, one
#: device's set added to another's.
_MOVE, _SWAP, _EXCHANGE, _MERGE = range(4)


def set_costs(instance: Instance, device_of_block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute seconds, memory bytes and payload bits of every device's set, for a batch of
    assignments (rows of ``device_of_block``, shape ``(M, N)``); each ``(M, K)``, zero for an
    empty set. No monotone profile is assumed: a set costs the largest compute and memory in it."""
    device_of_block = np.atleast_2d(device_of_block)
    member = device_of_block[:, :, None] == np.arange(instance.num_devices)  # (M, N, K)
    compute = np.where(member, instance.block_compute_s()[None, :, None], 0.0).max(axis=1)
    memory = np.where(member, instance.block_memory_bytes()[None, :, None], 0.0).max(axis=1)
    payload = np.einsum("mnk,n->mk", member, instance.block_payload_bits())
    return compute * instance.compute_scales(), memory, payload


def equalize_sets(instance: Instance, compute_s: np.ndarray, payload_bits: np.ndarray,
                  rows_to_solve: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~deft_ray.planners.bandwidth.equalize_bandwidth` for rows that each involve a
    different subset of the K devices: ``compute_s`` and ``payload_bits`` are ``(M, K)``, a device
    with no payload takes no part. Rows are grouped by their number of involved devices, so each
    group is one vectorised call on its involved columns.

    Returns:
        ``(latency_s, bandwidth_hz)`` of shapes ``(M,)`` and ``(M, K)``, zero bandwidth for a device
        without payload; rows outside ``rows_to_solve`` (default: all) get ``inf`` and no bandwidth.
    """
    num_rows, num_devices = compute_s.shape
    latency = np.full(num_rows, np.inf)
    bandwidth = np.zeros((num_rows, num_devices))
    involved = payload_bits > 0
    count = involved.sum(axis=1)
    solve = np.ones(num_rows, dtype=bool) if rows_to_solve is None else rows_to_solve
    channel = instance.channel()
    for width in np.unique(count[solve & (count > 0)]):
        rows = np.flatnonzero(solve & (count == width))
        columns = np.argsort(~involved[rows], axis=1, kind="stable")[:, :width]
        group_latency, shares = equalize_bandwidth(
            channel.take(columns), np.take_along_axis(compute_s[rows], columns, axis=1),
            np.take_along_axis(payload_bits[rows], columns, axis=1), instance.bandwidth_hz)
        latency[rows] = group_latency
        group_bandwidth = np.zeros((rows.size, num_devices))
        np.put_along_axis(group_bandwidth, columns, shares, axis=1)
        bandwidth[rows] = group_bandwidth
    return latency, bandwidth


@register_scheme
class MultiBlock(Scheme):
    """Joint block-set and bandwidth allocation when a device may train several blocks.

    Problem: the module docstring's (P2 without the one-block constraint, with the measured set
    costs of docs/method.md "Cost model": a set costs its lowest block's compute and memory, its
    payloads add). It works for any K and N, ``K < N`` included.

    Method: multi-start local search. Starts: JBBA's matching (when ``K >= N`` and a matching
    exists), a greedy that places blocks from block 0 (the dearest) upward, each on the device that
    minimises the optimally-bandwidthed latency of the blocks placed so far, and
    ``num_random_starts`` seeded random feasible assignments. From each start, every sweep looks at
    every move of four kinds: one block to another device (an idle one included), two blocks of
    different devices exchanged, the whole sets of two devices exchanged (a set moved to an idle
    device included), and one device's set merged into another's. A move lowers the round latency
    T iff the two devices it changes need less bandwidth at the current T than they need now (the
    other devices' needs are unchanged, and at the optimum all needs sum to ``B``), so one
    vectorised ``bandwidth_needed_hz`` evaluation screens every move of the sweep exactly. The
    improving moves are ranked by a Newton estimate of their new T; the best
    ``max_exact_per_sweep`` get their optimal bandwidth (:func:`equalize_sets`, batched) and the
    best of those is taken. A start ends when no move improves; the best plan over all starts is
    returned. Deterministic for a given seed.

    Guarantee: feasible; never worse than ``jbba`` when ``K >= N`` and a matching exists (JBBA's own
    allocation is returned unless a strictly better one is found); a local optimum with respect to
    the four moves, not a global one. Measured (``benchmarks/multiblock.py``): against the
    exhaustive ``optimal-sets`` on 200 random instances with K <= 4, N <= 6 (K < N included), the
    largest gap was 5e-11; on 54 paper-like RoBERTa instances (N = 12, 24; K = 4..24) it was on
    average 0.04% and at most 2.0% above the same search with 16 random starts.
    Complexity: per sweep, O(N K + N^2 + K^2) moves screened in O(1) each (vectorised), plus
    O(L K I) for the L exact equalisations (I ~ 10-40 root-search steps); the greedy start takes
    N - 1 such steps; plus one JBBA solve when ``K >= N``. Measured 0.05-0.4 s for N = 12-24,
    K = 6-24 on a shared 2-core machine.

    Args:
        num_random_starts: seeded random starting assignments besides JBBA and greedy (default: 2).
        max_exact_per_sweep: improving moves per sweep whose optimal bandwidth is computed exactly,
            and greedy candidates per block (default: 1).
        max_moves: moves taken from one start at most (default: 10000).

    Raises:
        InfeasibleError: a block fits no device's memory.
    """

    name = "multiblock"
    summary = "a device may train several blocks: multi-start local search over block sets + optimal bandwidth"
    one_block_per_device = False

    def __init__(self, *, num_random_starts: int = 2, max_exact_per_sweep: int = 1, max_moves: int = 10_000):
        self.num_random_starts = num_random_starts
        self.max_exact_per_sweep = max_exact_per_sweep
        self.max_moves = max_moves

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        instance = make_monotone(instance)[0]  # solve() already did; the moves below rely on it
        check_every_block_fits(instance)
        search = _LocalSearch(instance, self.max_exact_per_sweep, self.max_moves)
        starts = self._starts(instance, search, np.random.default_rng(seed))
        best_name, best = None, None
        notes = []
        for start_name, (device_of_block, bandwidth) in starts.items():
            result = search.run(device_of_block, bandwidth)
            notes.append(f"{start_name} {result.start_latency_s:.6g} s -> {result.latency_s:.6g} s "
                         f"in {result.num_moves} moves")
            if best is None or result.latency_s < best.latency_s * (1 - _IMPROVEMENT):
                best_name, best = start_name, result
        blocks_of_device = {int(k): tuple(int(n) for n in np.flatnonzero(best.device_of_block == k))
                            for k in np.unique(best.device_of_block)}
        return Allocation(blocks_of_device=blocks_of_device, bandwidth_hz=np.asarray(best.bandwidth_hz, dtype=float),
                          diagnostics=(f"multiblock: best from the {best_name} start; " + "; ".join(notes),))

    def _starts(self, instance: Instance, search: _LocalSearch,
                rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Starting assignments by name, with their bandwidth where it is already known."""
        starts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        try:
            check_matching_feasible(instance)
        except InfeasibleError:
            pass
        else:
            jbba = Jbba().allocate(instance, seed=0)
            device_of_block = np.empty(instance.num_blocks, dtype=int)
            for k, (n,) in jbba.blocks_of_device.items():
                device_of_block[n] = k
            starts["jbba"] = (device_of_block, jbba.bandwidth_hz)
        starts["greedy"] = (search.greedy(), None)
        feasible = instance.memory_feasible()
        for i in range(self.num_random_starts):
            starts[f"random{i}"] = (np.array([rng.choice(np.flatnonzero(feasible[:, n]))
                                              for n in range(instance.num_blocks)]), None)
        return starts


@dataclass(frozen=True, slots=True)
class _Result:
    """Where one start of the local search ended."""

    device_of_block: np.ndarray
    bandwidth_hz: np.ndarray
    latency_s: float
    start_latency_s: float
    num_moves: int


class _LocalSearch:
    """The local search of :class:`MultiBlock` on one monotone instance.

    A device's set is summarised by its lowest block ``first`` (``N`` for an empty set; with a
    monotone profile that block sets the set's compute and memory), its second-lowest block
    ``second`` (the new lowest once ``first`` leaves) and its payload.
    """

    def __init__(self, instance: Instance, max_exact: int, max_moves: int):
        self.instance = instance
        self.max_exact = max_exact
        self.max_moves = max_moves
        self.num_devices, self.num_blocks = instance.num_devices, instance.num_blocks
        self.block_compute_s = np.append(instance.block_compute_s(), 0.0)  # index N: the empty set
        self.block_memory = np.append(instance.block_memory_bytes(), 0.0)
        self.payload = instance.block_payload_bits()
        self.scale = instance.compute_scales()
        self.budget = instance.memory_budgets()
        self.channel = instance.channel()

    # ------------------------------------------------------------------------------ costs
    def need_hz(self, device: np.ndarray, first: np.ndarray, payload: np.ndarray, target_s) -> np.ndarray:
        """Bandwidth device ``device`` needs to finish the set (lowest block ``first``, payload
        ``payload``) by ``target_s``, elementwise: 0 for an empty set, ``inf`` if it does not fit."""
        compute = self.scale[device] * self.block_compute_s[first]
        need = bandwidth_needed_hz(self.channel.take(device), compute, payload, target_s)
        need = np.where(payload > 0, need, 0.0)
        return np.where(self.block_memory[first] <= self.budget[device], need, np.inf)

    def equalize(self, first: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Optimal latency ``(M,)`` and bandwidth ``(M, K)`` of set summaries ``(M, K)``."""
        compute = self.scale * self.block_compute_s[first]
        payload = np.where(first < self.num_blocks, payload, 0.0)
        return equalize_sets(self.instance, compute, payload)

    def summarise(self, device_of_block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``first``, ``second``, payload and block count of every device's set, each ``(K,)``."""
        first = np.full(self.num_devices, self.num_blocks)
        second = np.full(self.num_devices, self.num_blocks)
        for n in range(self.num_blocks - 1, -1, -1):  # blocks in descending order: the last seen is lowest
            k = device_of_block[n]
            first[k], second[k] = n, first[k]
        payload = np.bincount(device_of_block, weights=self.payload, minlength=self.num_devices)
        count = np.bincount(device_of_block, minlength=self.num_devices)
        return first, second, np.where(count > 0, payload, 0.0), count

    # ------------------------------------------------------------------------------ starts
    def greedy(self) -> np.ndarray:
        """Blocks from 0 (the dearest) upward, each on the device that minimises the optimal
        latency of the blocks placed so far. Block 0 alone takes the whole band, so its device is
        found in closed form; for each later block the ``max_exact`` devices with the best Newton
        estimates (:meth:`estimate_latency_s`) are equalised exactly (ties: the lower index)."""
        fits = self.block_memory[0] <= self.budget
        whole_band = self.payload[0] / self.channel.rate_bps(np.full(self.num_devices, self.instance.bandwidth_hz))
        k = int(np.argmin(np.where(fits, self.scale * self.block_compute_s[0] + whole_band, np.inf)))
        device_of_block = np.full(self.num_blocks, k)
        first, payload = np.full(self.num_devices, self.num_blocks), np.zeros(self.num_devices)
        first[k], payload[k] = 0, self.payload[0]
        latency_s = float(self.equalize(first[None], payload[None])[0][0])
        for n in range(1, self.num_blocks):
            fits = np.flatnonzero(self.block_memory[n] <= self.budget)
            new_first, new_payload = np.minimum(first[fits], n), payload[fits] + self.payload[n]
            estimate = self.estimate_latency_s(first, payload, latency_s, fits[:, None], new_first[:, None],
                                               new_payload[:, None])
            chosen = np.argsort(estimate, kind="stable")[:self.max_exact]
            if not np.isfinite(estimate[chosen]).any():
                chosen = np.arange(fits.size)
            candidate_first, candidate_payload = np.tile(first, (chosen.size, 1)), np.tile(payload, (chosen.size, 1))
            candidate_first[np.arange(chosen.size), fits[chosen]] = new_first[chosen]
            candidate_payload[np.arange(chosen.size), fits[chosen]] = new_payload[chosen]
            latency, _ = self.equalize(candidate_first, candidate_payload)
            best = int(np.argmin(latency))
            k = int(fits[chosen[best]])
            device_of_block[n], latency_s = k, float(latency[best])
            first[k], payload[k] = min(first[k], n), payload[k] + self.payload[n]
        return device_of_block

    # ------------------------------------------------------------------------------ search
    def run(self, device_of_block: np.ndarray, bandwidth_hz: np.ndarray | None) -> _Result:
        """Local search from ``device_of_block`` (with its bandwidth, if known) until no move improves."""
        device_of_block = np.array(device_of_block, dtype=int)
        first, second, payload, count = self.summarise(device_of_block)
        if bandwidth_hz is None:
            latency, bandwidth = self.equalize(first[None], payload[None])
            latency_s, bandwidth_hz = float(latency[0]), bandwidth[0]
        else:
            latency_s = self.latency_s(first, payload, bandwidth_hz)
        start_latency_s, num_moves = latency_s, 0
        while num_moves < self.max_moves:
            step = self.best_move(device_of_block, first, second, payload, count, latency_s)
            if step is None or step[1] >= latency_s * (1 - _IMPROVEMENT):
                break
            device_of_block, latency_s, bandwidth_hz = step
            first, second, payload, count = self.summarise(device_of_block)
            num_moves += 1
        return _Result(device_of_block, bandwidth_hz, latency_s, start_latency_s, num_moves)

    def latency_s(self, first: np.ndarray, payload: np.ndarray, bandwidth_hz: np.ndarray) -> float:
        """Round latency of set summaries at the given bandwidth, scored as ``evaluate`` does."""
        used = first < self.num_blocks
        with np.errstate(divide="ignore"):
            upload = payload[used] / self.channel.take(np.flatnonzero(used)).rate_bps(bandwidth_hz[used])
        return float((self.scale[used] * self.block_compute_s[first[used]] + upload).max())

    def best_move(self, device_of_block, first, second, payload, count, latency_s):
        """The best of the most promising improving moves, as ``(device_of_block, latency_s,
        bandwidth_hz)``, or ``None`` when no move frees bandwidth at ``latency_s``."""
        moves = self.moves(device_of_block, first, second, payload, count)
        kind, i, j, a, first_a, payload_a, b, first_b, payload_b = moves
        current = self.need_hz(np.arange(self.num_devices), first, payload, latency_s)
        before = current[a] + current[b]
        after = self.need_hz(a, first_a, payload_a, latency_s) + self.need_hz(b, first_b, payload_b, latency_s)
        promising = np.flatnonzero(after - before < -_SCREEN_SLACK * self.instance.bandwidth_hz)
        if promising.size == 0:
            return None
        if promising.size > self.max_exact:
            changed = np.stack([a[promising], b[promising]], axis=1)
            estimate = self.estimate_latency_s(
                first, payload, latency_s, changed, np.stack([first_a[promising], first_b[promising]], axis=1),
                np.stack([payload_a[promising], payload_b[promising]], axis=1))
            promising = promising[np.argsort(estimate, kind="stable")[:self.max_exact]]
        rows = np.arange(promising.size)
        candidate_first = np.tile(first, (promising.size, 1))
        candidate_payload = np.tile(payload, (promising.size, 1))
        candidate_first[rows, a[promising]] = first_a[promising]
        candidate_payload[rows, a[promising]] = payload_a[promising]
        candidate_first[rows, b[promising]] = first_b[promising]
        candidate_payload[rows, b[promising]] = payload_b[promising]
        latency, bandwidth = self.equalize(candidate_first, candidate_payload)
        best = int(np.argmin(latency))
        move = promising[best]
        return _apply(device_of_block, kind[move], i[move], j[move]), float(latency[best]), bandwidth[best]

    def estimate_latency_s(self, first: np.ndarray, payload: np.ndarray, latency_s: float, changed: np.ndarray,
                           changed_first: np.ndarray, changed_payload: np.ndarray) -> np.ndarray:
        """The latency after each of C changes, estimated by one Newton step from ``latency_s`` on
        the total bandwidth need (slope by finite difference); only used to rank changes. Change c
        gives device ``changed[c, w]`` the set summary ``changed_first[c, w]``,
        ``changed_payload[c, w]`` (arrays ``(C, W)``); ``inf`` where the need is infinite."""

        def total_need_hz(target_s: float) -> np.ndarray:
            need = self.need_hz(np.arange(self.num_devices), first, payload, target_s)
            return need.sum() - need[changed].sum(axis=1) + self.need_hz(changed, changed_first, changed_payload,
                                                                         target_s).sum(axis=1)

        later_s = latency_s * (1 + _SLOPE_STEP)
        now, later = total_need_hz(latency_s), total_need_hz(later_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = latency_s + (self.instance.bandwidth_hz - now) / ((later - now) / (later_s - latency_s))
        return np.where(np.isfinite(estimate), estimate, np.inf)

    def moves(self, device_of_block, first, second, payload, count):
        """Every move, as arrays ``(kind, i, j, a, first_a, payload_a, b, first_b, payload_b)``: the
        move changes devices ``a`` and ``b`` to the given set summaries (see :func:`_apply` for
        ``kind``, ``i`` and ``j``)."""
        parts = (self._block_moves(device_of_block, first, second, payload, count)
                 + self._set_moves(first, payload, count))
        return tuple(np.concatenate(columns) for columns in zip(*parts))

    def _block_moves(self, d, first, second, payload, count):
        """One block to another device (``_MOVE``), and two blocks of different devices exchanged
        (``_SWAP``)."""
        n_blocks, p = self.num_blocks, self.payload
        lowest_without = np.where(first[d] == np.arange(n_blocks), second[d], first[d])
        left_payload = np.where(count[d] == 1, 0.0, payload[d] - p)
        n, k = (x.ravel() for x in np.meshgrid(np.arange(n_blocks), np.arange(self.num_devices), indexing="ij"))
        keep = k != d[n]
        n, k = n[keep], k[keep]
        move = (np.full(n.size, _MOVE), n, k, d[n], lowest_without[n], left_payload[n],
                k, np.minimum(first[k], n), payload[k] + p[n])
        n, m = np.triu_indices(n_blocks, 1)
        keep = d[n] != d[m]
        n, m = n[keep], m[keep]
        swap = (np.full(n.size, _SWAP), n, m, d[n], np.minimum(lowest_without[n], m), payload[d[n]] - p[n] + p[m],
                d[m], np.minimum(lowest_without[m], n), payload[d[m]] - p[m] + p[n])
        return [move, swap]

    def _set_moves(self, first, payload, count):
        """The sets of two devices exchanged (``_EXCHANGE``, a set to an idle device included), and
        one device's set merged into another's (``_MERGE``)."""
        a, b = np.triu_indices(self.num_devices, 1)
        keep = (count[a] > 0) | (count[b] > 0)
        a, b = a[keep], b[keep]
        exchange = (np.full(a.size, _EXCHANGE), a, b, a, first[b], payload[b], b, first[a], payload[a])
        a, b = (x.ravel() for x in np.meshgrid(np.arange(self.num_devices), np.arange(self.num_devices), indexing="ij"))
        keep = (a != b) & (count[a] > 0) & (count[b] > 0)
        a, b = a[keep], b[keep]
        merge = (np.full(a.size, _MERGE), a, b, a, np.full(a.size, self.num_blocks), np.zeros(a.size),
                 b, np.minimum(first[a], first[b]), payload[a] + payload[b])
        return [exchange, merge]


def _apply(device_of_block: np.ndarray, kind: int, i: int, j: int) -> np.ndarray:
    """The assignment after one move: block i to device j (``_MOVE``); blocks i and j exchanged
    (``_SWAP``); the sets of devices i and j exchanged (``_EXCHANGE``); device i's set added to
    device j's (``_MERGE``)."""
    result = device_of_block.copy()
    if kind == _MOVE:
        result[i] = j
    elif kind == _SWAP:
        result[i], result[j] = device_of_block[j], device_of_block[i]
    elif kind == _EXCHANGE:
        result[device_of_block == i], result[device_of_block == j] = j, i
    else:
        result[device_of_block == i] = j
    return result
