"""The optimal bandwidth split for fixed block assignments (docs/method.md, "Problem 2: joint block
and bandwidth allocation").

For a fixed assignment, minimising the round latency over the shares is convex and its optimum
makes every involved device finish at the same time ``T``, with the shares summing to the total.
:func:`equalize_bandwidth` finds that ``T`` for a batch of assignments; every scheme that optimises
bandwidth for a fixed assignment (JBBA's primal recovery, the exact solver, the baselines' ``-bw``
variants, multiblock and the federated baselines) uses it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from deft_ray.planners.energy import floor_shares_hz
from deft_ray.planners.instance import Instance
from deft_ray.planners.rates import Channel

#: Newton steps of :func:`equalize_bandwidth` at most (each bisects when it leaves the bracket).
_MAX_STEPS = 100
#: :func:`equalize_bandwidth` stops when the needs sum to the band within this relative error.
_RELATIVE_TOLERANCE = 1e-12


def bandwidth_needed_hz(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray,
                        target_s: np.ndarray, floor_hz: np.ndarray | float = 0.0) -> np.ndarray:
    """The bandwidth a device needs to finish ``compute + upload`` by ``target_s``, elementwise,
    and at least ``floor_hz`` (its energy floor, docs/method.md "Energy budgets").

    ``inf`` where the target is at or below the compute time, or needs more than the capacity.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slack = np.asarray(target_s, dtype=float) - compute_s
        rate = np.where(slack > 0, payload_bits / slack, np.inf)
    return np.maximum(channel.bandwidth_for_rate_hz(rate), floor_hz)


def _need_and_slope(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray,
                    target_s: np.ndarray, floor_hz: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bandwidth_needed_hz` and its derivative in ``target_s`` (negative, or 0 where the
    floor binds), elementwise: ``d need / dT = -(D / (T - c)^2) / R'(need)``."""
    need = bandwidth_needed_hz(channel, compute_s, payload_bits, target_s)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slack = np.asarray(target_s, dtype=float) - compute_s
        slope = -(payload_bits / (slack * slack)) / channel.rate_slope_bps_per_hz(need)
    binds = need < floor_hz
    return np.where(binds, floor_hz, need), np.where(binds, 0.0, slope)


def equalize_bandwidth(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray,
                       total_hz: float, floor_hz: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal shares of ``total_hz`` for a batch of fixed assignments.

    Solves ``min_B max_k compute_k + payload_k / R_k(B_k)  s.t.  sum_k B_k <= total_hz`` for each
    row: every row ``m`` is one assignment, its columns the involved devices (``channel``,
    ``compute_s`` and ``payload_bits`` all have shape ``(M, J)``). The optimum equalises the
    finishing times, so it is the root ``T`` of ``f(T) = sum_k need_k(T) - total_hz``. ``f`` is
    convex and decreasing (each need is a convex increasing function of the rate ``D / (T - c)``,
    itself convex and decreasing in ``T``), so Newton's method, kept inside the bracket, converges
    monotonically from the left of the root. The bracket: below, the time at which some device
    would need infinite bandwidth; above, the latency with equal shares ``total_hz / J``, which is
    feasible.

    With energy floors ``floor_hz`` (``(M, J)``, docs/method.md "Energy budgets") each need is at
    least its floor: ``f`` stays convex and non-increasing (a maximum of such functions and a
    constant), devices at their floor finish early, and the upper end of the bracket gives each
    device its floor plus an equal part of the rest. A row whose floors exceed the band has
    latency ``inf``.

    Returns:
        ``(latency_s, shares_hz)`` of shapes ``(M,)`` and ``(M, J)``; each row's shares sum to
        ``total_hz`` (``inf`` latency and shares for a row whose floors do not fit).

    Complexity: O(M J I), with I ~ 5-15 Newton steps.
    """
    compute_s = np.atleast_2d(np.asarray(compute_s, dtype=float))
    payload_bits = np.broadcast_to(np.asarray(payload_bits, dtype=float), compute_s.shape)
    floor = np.zeros(compute_s.shape) if floor_hz is None else np.broadcast_to(floor_hz, compute_s.shape)
    equal = floor_shares_hz(floor, total_hz)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        low = (compute_s + payload_bits / channel.max_rate_bps()).max(axis=1)
        high = (compute_s + payload_bits / channel.rate_bps(equal)).max(axis=1)
    high[~np.isfinite(equal).all(axis=1)] = np.inf
    target = high.copy()
    active = np.flatnonzero(np.isfinite(high) & (high > low))
    for _ in range(_MAX_STEPS):
        if not active.size:
            break
        sub = channel.take(active) if channel.snr_hz.ndim == 2 else channel
        need, slope = _need_and_slope(sub, compute_s[active], payload_bits[active], target[active, None],
                                      floor[active])
        excess = need.sum(axis=1) - total_hz
        derivative = slope.sum(axis=1)
        t = target[active]
        above = excess <= 0  # t is at or above the root
        high[active] = np.where(above, t, high[active])
        low[active] = np.where(above, low[active], t)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = t - excess / derivative
        lo, hi = low[active], high[active]
        inside = np.isfinite(step) & (step > lo) & (step <= hi)
        new = np.where(inside, step, lo + 0.5 * (hi - lo))
        # done when the needs fill the band, or when T is within rounding of the root: the bracket
        # has closed, or the Newton step is below rounding while the needs are already within the
        # band's size of it (near the lower end, where needs blow up, steps start tiny but grow)
        rounding = 4 * np.spacing(t)
        done = ((np.abs(excess) <= _RELATIVE_TOLERANCE * total_hz) | (hi - lo <= rounding)
                | ((np.abs(step - t) <= rounding) & (np.abs(excess) < total_hz)))
        target[active] = np.where(done, t, new)
        active = active[~done]
    need = _feasible_needs(channel, compute_s, payload_bits, target, high, total_hz, floor)
    bad = ~np.isfinite(need).all(axis=1) | ~(need.sum(axis=1) > 0)
    need[bad] = equal[bad]  # feasible (or inf where the floors do not fit)
    with np.errstate(invalid="ignore"):
        shares = need * (total_hz / need.sum(axis=1, keepdims=True))  # scales up: nobody finishes later
        latency = (compute_s + payload_bits / channel.rate_bps(shares)).max(axis=1)
    latency[~np.isfinite(shares).all(axis=1)] = np.inf
    return latency, shares


def _feasible_needs(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray, target_s: np.ndarray,
                    feasible_s: np.ndarray, total_hz: float, floor_hz: np.ndarray) -> np.ndarray:
    """The needs ``(M, J)`` at the smallest ``T`` at or just above ``target_s`` whose needs fit in
    ``total_hz``: ``T`` moves up by 1, 2, 4, ... units in the last place until they fit (the root
    search ends within rounding of the root, on either side of it), or to ``feasible_s``."""
    target = np.array(target_s, dtype=float)
    need = bandwidth_needed_hz(channel, compute_s, payload_bits, target[:, None], floor_hz)
    over = np.flatnonzero(~(need.sum(axis=1) <= total_hz))
    for power in range(64):
        if not over.size:
            break
        sub = channel.take(over) if channel.snr_hz.ndim == 2 else channel
        target[over] = np.minimum(target[over] + 2.0 ** power * np.spacing(target[over]), feasible_s[over])
        need[over] = bandwidth_needed_hz(sub, compute_s[over], payload_bits[over], target[over, None],
                                         floor_hz[over])
        over = over[~(need[over].sum(axis=1) <= total_hz) & (target[over] < feasible_s[over])]
    return need


def optimal_bandwidth_for(instance: Instance, device_of_block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal bandwidth of a batch of matchings (rows of ``device_of_block``): latency ``(M,)``
    and the ``(M, K)`` bandwidth of every device."""
    device_of_block = np.atleast_2d(device_of_block)
    blocks = np.arange(instance.num_blocks)
    compute = instance.compute_matrix_s()[device_of_block, blocks]
    payload = np.broadcast_to(instance.block_payload_bits(), compute.shape)
    floor = instance.bandwidth_floor_hz()[device_of_block, blocks] if instance.has_energy_budgets else None
    latency, shares = equalize_bandwidth(instance.channel().take(device_of_block), compute, payload,
                                         instance.bandwidth_hz, floor)
    bandwidth = np.zeros((device_of_block.shape[0], instance.num_devices))
    np.put_along_axis(bandwidth, device_of_block, shares, axis=1)
    return latency, bandwidth


def cheapest_matching(channel: Channel, compute: np.ndarray, feasible: np.ndarray, payload: np.ndarray,
                      target_s: float, total_hz: float, floor_hz: np.ndarray | None = None) -> np.ndarray | None:
    """The matching whose bandwidth needs at ``target_s`` sum least (``device_of_block``), or
    ``None`` when no matching is feasible there: a min-sum assignment (Hungarian method) of the
    ``(K, N)`` needs of the pairs that are memory-feasible and compute in less than ``target_s``.

    Needs above ``total_hz`` count as ``2 total_hz``: no assignment using one fits in the band, so
    capping them keeps the costs finite. Only each block's N cheapest devices are kept: whatever
    the other N - 1 blocks use, one of them is free, and moving the block there never raises the
    sum, so the optimum survives; the Hungarian solve then has at most N^2 columns. With energy
    floors ``floor_hz`` (``(K, N)``) each need is at least its floor.
    Complexity: O(K N I) for the needs (I Newton steps of the inverse) plus O(N^3) for the solve."""
    num_blocks = compute.shape[1]
    allowed = feasible & (compute < target_s)
    devices = np.flatnonzero(allowed.any(axis=1))
    if devices.size < num_blocks:
        return None
    rows, cols = np.nonzero(allowed[devices])
    cap = 2.0 * total_hz
    need = np.full((devices.size, num_blocks), cap)
    floor = 0.0 if floor_hz is None else floor_hz[devices[rows], cols]
    values = bandwidth_needed_hz(channel.take(devices[rows]), compute[devices[rows], cols], payload[cols], target_s,
                                 floor)
    need[rows, cols] = np.minimum(values, cap)
    if devices.size > num_blocks * num_blocks:  # each block's N cheapest devices suffice
        nearest = np.argpartition(need, num_blocks - 1, axis=0)[:num_blocks]
        keep = np.unique(nearest)
        devices, need = devices[keep], need[keep]
    block_rows, device_columns = linear_sum_assignment(need.T)
    if need.T[block_rows, device_columns].sum() >= cap:
        return None
    return devices[device_columns[np.argsort(block_rows)]]
