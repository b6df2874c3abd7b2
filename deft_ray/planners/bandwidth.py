"""Bandwidth allocation for fixed block assignments.

:func:`equalize_bandwidth` is the optimal bandwidth split for a fixed assignment (PAPER.md
section 5.5, primal recovery): for a fixed assignment, minimising the round latency over the shares
is convex and its optimum makes every involved device finish at the same time ``T``, with the
shares summing to the total. Every scheme that optimises bandwidth for a fixed assignment (JBBA's
primal recovery, the exact enumeration, the baselines' ``-bw`` variants) uses it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, elementwise

from deft_ray.planners.problem import Channel, Instance


def bandwidth_needed_hz(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray,
                        target_s: np.ndarray) -> np.ndarray:
    """The bandwidth a device needs to finish ``compute + upload`` by ``target_s``, elementwise.

    ``inf`` where the target is at or below the compute time, or needs more than the capacity.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        slack = np.asarray(target_s, dtype=float) - compute_s
        rate = np.where(slack > 0, payload_bits / slack, np.inf)
    return channel.bandwidth_for_rate_hz(rate)


def equalize_bandwidth(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray,
                       total_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal shares of ``total_hz`` for a batch of fixed assignments.

    Solves ``min_B max_k compute_k + payload_k / R_k(B_k)  s.t.  sum_k B_k <= total_hz`` for each
    row: every row ``m`` is one assignment, its columns the involved devices (``channel``,
    ``compute_s`` and ``payload_bits`` all have shape ``(M, J)``). The optimum equalises the
    finishing times, so it is the root ``T`` of ``sum_k need_k(T) = total_hz``, found per row by a
    bracketing root search on ``log(sum need / total)`` (``scipy.optimize.elementwise.find_root``
    for a batch, ``brentq`` for one row).
    The bracket: below, the time at which some device would need infinite bandwidth; above, the
    latency with equal shares ``total_hz / J``, which is feasible.

    Returns:
        ``(latency_s, shares_hz)`` of shapes ``(M,)`` and ``(M, J)``; each row's shares sum to
        ``total_hz``.

    Complexity: O(M J I), with I ~ 10-40 root-search iterations.
    """
    compute_s = np.atleast_2d(np.asarray(compute_s, dtype=float))
    payload_bits = np.broadcast_to(np.asarray(payload_bits, dtype=float), compute_s.shape)
    num_involved = compute_s.shape[1]
    with np.errstate(divide="ignore"):
        lower = (compute_s + payload_bits / channel.max_rate_bps()).max(axis=1)
    upper = (compute_s + payload_bits / channel.rate_bps(np.full(compute_s.shape, total_hz / num_involved))).max(axis=1)
    upper = np.maximum(upper, lower)

    start = lower + 1e-12 * np.maximum(upper - lower, np.abs(upper))
    latency = upper.copy()
    data = (channel.spectral_efficiency, channel.snr_hz, compute_s, payload_bits,
            np.full((compute_s.shape[0], 1), float(total_hz)))
    rows = np.flatnonzero((start < upper) & (_log_excess(upper, *_columns(data)) < 0))
    if rows.size == 1:  # one assignment (JBBA, the baselines): a scalar Brent search is fastest
        row = rows[0]
        single = channel.take(row)

        def log_excess(target_s: float) -> float:
            need = bandwidth_needed_hz(single, compute_s[row], payload_bits[row], target_s).sum()
            return float(np.clip(np.log(need / total_hz), -50.0, 50.0)) if need > 0 else -50.0

        latency[row] = brentq(log_excess, start[row], upper[row], xtol=1e-14, rtol=1e-12)
    elif rows.size:
        # find_root works elementwise and drops converged rows from its arguments as it goes, so each
        # row's data travels as arguments of shape (M,) rather than as (M, J) matrices.
        result = elementwise.find_root(_log_excess, (start[rows], upper[rows]),
                                       args=_columns(tuple(matrix[rows] for matrix in data)),
                                       tolerances=dict(xrtol=1e-12, xatol=0.0))
        latency[rows] = np.where(result.success, result.x, upper[rows])
    need = bandwidth_needed_hz(channel, compute_s, payload_bits, latency[:, None])
    need[~np.isfinite(need).all(axis=1)] = total_hz / num_involved  # equal shares are feasible
    shares = need * (total_hz / need.sum(axis=1, keepdims=True))
    latency = (compute_s + payload_bits / channel.rate_bps(shares)).max(axis=1)
    return latency, shares


def _columns(matrices: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Four ``(M, J)`` matrices and the ``(M, 1)`` total, as ``4J + 1`` arrays of shape ``(M,)``."""
    return tuple(column for matrix in matrices for column in np.asarray(matrix).T)


def _log_excess(target_s: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    """``log(sum_k need_k(T) / total)`` per row, from the arrays packed by :func:`_columns`,
    clipped so the root search sees finite values."""
    *columns, total_hz = columns
    width = len(columns) // 4
    efficiency, snr, compute, payload = (np.stack(columns[i * width:(i + 1) * width], axis=-1) for i in range(4))
    need = bandwidth_needed_hz(Channel(efficiency, snr), compute, payload, target_s[..., None]).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return np.clip(np.log(need / total_hz), -50.0, 50.0)


def optimal_bandwidth_for(instance: Instance, device_of_block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal bandwidth of a batch of matchings (rows of ``device_of_block``): latency ``(M,)``
    and the ``(M, K)`` bandwidth of every device."""
    device_of_block = np.atleast_2d(device_of_block)
    blocks = np.arange(instance.num_blocks)
    compute = instance.compute_matrix_s()[device_of_block, blocks]
    payload = np.broadcast_to(instance.block_payload_bits(), compute.shape)
    latency, shares = equalize_bandwidth(instance.channel().take(device_of_block), compute, payload,
                                         instance.bandwidth_hz)
    bandwidth = np.zeros((device_of_block.shape[0], instance.num_devices))
    np.put_along_axis(bandwidth, device_of_block, shares, axis=1)
    return latency, bandwidth
