"""Reference solutions for planner tests, sharing no code with deft_ray.planners.

- :func:`mp_shannon_bandwidth_hz`: the Shannon bandwidth inverse in 60-digit arithmetic (mpmath),
  by bisection on ``log b``.
- :func:`brute_force_joint_optimum`: the optimum of P2 on a small instance: every matching, each
  with its latency-equalising bandwidth found by nested bisections (on T, and per device on b).
"""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np

mpmath.mp.dps = 60


def mp_shannon_bandwidth_hz(rate_bps: float, snr_hz: float) -> mpmath.mpf:
    """``b`` with ``b log2(1 + snr / b) = rate`` to about 40 digits, for the exact float inputs;
    ``inf`` at or above the capacity ``snr / ln 2``."""
    rate, snr = mpmath.mpf(rate_bps), mpmath.mpf(snr_hz)
    if rate * mpmath.log(2) >= snr:
        return mpmath.inf
    low, high = mpmath.mpf(10) ** -330, mpmath.mpf(10) ** 330
    for _ in range(3000):
        middle = mpmath.sqrt(low * high)
        if middle * mpmath.log1p(snr / middle) / mpmath.log(2) < rate:
            low = middle
        else:
            high = middle
        if high / low - 1 < mpmath.mpf(10) ** -45:
            break
    return low


def _rate(bandwidth: np.ndarray, efficiency: np.ndarray, snr: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        shannon = bandwidth * np.log1p(snr / bandwidth) / math.log(2)
    return np.where(np.isnan(efficiency), shannon, bandwidth * efficiency)


def _need(rate: np.ndarray, efficiency: np.ndarray, snr: np.ndarray, steps: int = 200) -> np.ndarray:
    """Bandwidth reaching ``rate``, by bisection on log b (``inf`` past the capacity)."""
    low = np.full(rate.shape, -700.0)
    high = np.full(rate.shape, 700.0)
    for _ in range(steps):
        middle = 0.5 * (low + high)
        short = _rate(np.exp(middle), efficiency, snr) < rate
        low, high = np.where(short, middle, low), np.where(short, high, middle)
    need = np.exp(high)
    return np.where(high > 699.0, np.inf, need)


def equalised_latency_s(compute: np.ndarray, payload: np.ndarray, efficiency: np.ndarray, snr: np.ndarray,
                        total_hz: float, steps: int = 100) -> np.ndarray:
    """Rows of pairs (M, J): the smallest T at which the pairs' needs fit in ``total_hz``."""
    low = compute.max(axis=1)
    high = low + 1.0
    while True:  # grow the upper end until it is feasible
        slack = high[:, None] - compute
        fits = _need(payload / slack, efficiency, snr).sum(axis=1) <= total_hz
        if fits.all():
            break
        high = np.where(fits, high, low + 2 * (high - low))
    for _ in range(steps):
        middle = 0.5 * (low + high)
        with np.errstate(divide="ignore"):
            rate = np.where(middle[:, None] > compute, payload / (middle[:, None] - compute), np.inf)
        fits = _need(rate, efficiency, snr).sum(axis=1) <= total_hz
        low, high = np.where(fits, low, middle), np.where(fits, middle, high)
    return high


def _memory_feasible_matchings(instance) -> tuple[list[float], np.ndarray]:
    """Each block's compute seconds made monotone in depth (as planned), and every one-block-per-
    device matching (row n: the device of block n) whose devices hold their blocks' memory."""
    devices, blocks = instance.devices, instance.blocks
    compute_s = [max(b.compute_s for b in blocks[n:]) for n in range(len(blocks))]
    memory = [max(b.memory_bytes for b in blocks[n:]) for n in range(len(blocks))]
    rows = [p for p in itertools.permutations(range(len(devices)), len(blocks))
            if all(memory[n] <= devices[k].memory_bytes for n, k in enumerate(p))]
    return compute_s, np.array(rows, dtype=int).reshape(len(rows), len(blocks))


def brute_force_joint_optimum(instance) -> float:
    """The optimum of P2 (one block per device) of a small instance, from the raw fields."""
    devices, blocks = instance.devices, instance.blocks
    compute_s, matchings = _memory_feasible_matchings(instance)
    scale = np.array([d.compute_scale for d in devices])
    efficiency = np.array([math.nan if d.spectral_efficiency is None else d.spectral_efficiency for d in devices])
    snr = np.array([math.nan if d.spectral_efficiency is not None else
                    d.tx_power_w * d.channel_gain / instance.noise_psd_w_per_hz for d in devices])
    compute = scale[matchings] * np.array(compute_s)[None, :]
    payload = np.broadcast_to(np.array([b.payload_bits for b in blocks])[None, :], compute.shape)
    latency = equalised_latency_s(compute, payload, efficiency[matchings], snr[matchings], instance.bandwidth_hz)
    return float(latency.min())


def _energy_floor_hz(compute: np.ndarray, payload: np.ndarray, compute_power: np.ndarray, tx_power: np.ndarray,
                     budget: np.ndarray, efficiency: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """Least bandwidth keeping ``compute_power * compute + tx_power * payload / R(b) <= budget``,
    by bisection on log b (``inf`` where none does, 0 without a budget)."""
    spare = budget - compute_power * compute
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(spare > 0, payload * tx_power / spare, np.inf)
    rate = np.where(tx_power == 0, np.where(spare >= 0, 0.0, np.inf), rate)
    return np.where(np.isinf(budget), 0.0, np.where(rate > 0, _need(rate, efficiency, snr), 0.0))


def _fit_latency_s(compute: np.ndarray, payload: np.ndarray, floor: np.ndarray, efficiency: np.ndarray,
                   snr: np.ndarray, total_hz: float, steps: int = 100) -> np.ndarray:
    """Rows of pairs (M, J): the smallest T at which ``max(need(T), floor)`` fits in ``total_hz``
    (``inf`` where even the floors with the whole band do not)."""
    def fits(target: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            rate = np.where(target[:, None] > compute, payload / (target[:, None] - compute), np.inf)
        return np.maximum(_need(rate, efficiency, snr), floor).sum(axis=1) <= total_hz

    low = compute.max(axis=1)
    high = low + 1.0
    possible = floor.sum(axis=1) < total_hz
    for _ in range(200):  # grow the upper end until it is feasible
        ok = fits(high) | ~possible
        if ok.all():
            break
        high = np.where(ok, high, low + 2 * (high - low))
    for _ in range(steps):
        middle = 0.5 * (low + high)
        ok = fits(middle)
        low, high = np.where(ok, low, middle), np.where(ok, middle, high)
    return np.where(possible, high, np.inf)


def _device_arrays(instance):
    devices = instance.devices
    efficiency = np.array([math.nan if d.spectral_efficiency is None else d.spectral_efficiency for d in devices])
    snr = np.array([math.nan if d.spectral_efficiency is not None else
                    d.tx_power_w * d.channel_gain / instance.noise_psd_w_per_hz for d in devices])
    compute_power = np.array([d.compute_power_w or 0.0 for d in devices])
    tx_power = np.array([d.tx_power_w or 0.0 for d in devices])
    budget = np.array([math.inf if d.energy_budget_j is None else d.energy_budget_j for d in devices])
    return efficiency, snr, compute_power, tx_power, budget


def brute_force_budget_optimum(instance) -> float:
    """The optimum of P2 with energy budgets (one block per device) of a small instance, from the
    raw fields: every memory-feasible matching, each pair's energy floor by bisection, and the
    least T at which the needs raised to the floors fit in the band; ``inf`` when none fits."""
    devices, blocks = instance.devices, instance.blocks
    compute_s, matchings = _memory_feasible_matchings(instance)
    scale = np.array([d.compute_scale for d in devices])
    efficiency, snr, compute_power, tx_power, budget = _device_arrays(instance)
    compute = scale[matchings] * np.array(compute_s)[None, :]
    payload = np.broadcast_to(np.array([b.payload_bits for b in blocks])[None, :], compute.shape)
    floor = _energy_floor_hz(compute, payload, compute_power[matchings], tx_power[matchings], budget[matchings],
                             efficiency[matchings], snr[matchings])
    latency = _fit_latency_s(compute, payload, floor, efficiency[matchings], snr[matchings], instance.bandwidth_hz)
    return float(latency.min()) if latency.size else math.inf


def plan_energy_j(instance, plan) -> dict[str, float]:
    """Each involved device's energy under ``plan``, from the raw fields (one block per device)."""
    efficiency, snr, compute_power, tx_power, _ = _device_arrays(instance)
    index = {d.name: k for k, d in enumerate(instance.devices)}
    compute_s = [max(b.compute_s for b in instance.blocks[n:]) for n in range(len(instance.blocks))]
    energy = {}
    for name, (n,) in plan.assignment.items():
        k = index[name]
        rate = _rate(np.array(plan.bandwidth_hz[name]), efficiency[k], snr[k])
        seconds = instance.devices[k].compute_scale * compute_s[n]
        energy[name] = float(compute_power[k] * seconds + tx_power[k] * instance.blocks[n].payload_bits / rate)
    return energy
