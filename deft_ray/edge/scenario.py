"""Random paper-like device populations: from a block profile and a population spec to an Instance.

The defaults follow the paper's simulations (docs/method.md, "Cost model"): 20 devices, 10 MHz,
compute scales U[1, 5], memory budgets spread over the profile's range, distances U[50, 500] m with 3GPP path loss, 23 dBm
transmit power and -174 dBm/Hz noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deft_ray.edge.radio import THERMAL_NOISE_DBM_PER_HZ, channel_gain, dbm_to_w, device_state
from deft_ray.planners import BlockCost, Instance


@dataclass(frozen=True, kw_only=True, slots=True)
class PopulationSpec:
    """How a random device population is drawn."""

    num_devices: int = 20
    bandwidth_hz: float = 1e7
    compute_scale: tuple[float, float] = (1.0, 5.0)
    """Uniform range of the devices' compute time multipliers."""
    memory_fraction: tuple[float, float] = (0.0, 1.2)
    """Budgets drawn uniformly between the cheapest block's memory plus ``low`` times the range and
    the dearest block's memory times ``high`` (the paper's U[m_min, 1.2 m_max])."""
    distance_m: tuple[float, float] = (50.0, 500.0)
    tx_power_dbm: float = 23.0
    noise_dbm_per_hz: float = THERMAL_NOISE_DBM_PER_HZ
    rayleigh: bool = False
    rate_model: str = "shannon"
    """``shannon`` (noise proportional to bandwidth) or ``spectral_efficiency`` (fixed per device,
    from the SNR at an equal share ``B / K``)."""
    max_draws: int = 1000
    """Redraws of the memory budgets until a one-block-per-device matching exists."""


def random_instance(blocks: tuple[BlockCost, ...], spec: PopulationSpec, rng: np.random.Generator) -> Instance:
    """Draw a device population for ``blocks``; redraw memory budgets until every block can be
    matched to its own device (when ``num_devices >= num_blocks``)."""
    k = spec.num_devices
    memory = np.array([b.memory_bytes for b in blocks])
    low = memory.min() + spec.memory_fraction[0] * (memory.max() - memory.min())
    high = memory.max() * spec.memory_fraction[1]
    scales = rng.uniform(*spec.compute_scale, size=k)
    distances = rng.uniform(*spec.distance_m, size=k)
    gains = channel_gain(distances, rayleigh=spec.rayleigh, rng=rng)
    for _ in range(spec.max_draws):
        budgets = rng.uniform(low, high, size=k)
        ordered = np.sort(memory)[::-1]
        if k < len(blocks) or all((budgets >= ordered[n]).sum() >= n + 1 for n in range(len(blocks))):
            break
    power_w = dbm_to_w(spec.tx_power_dbm)
    noise = dbm_to_w(spec.noise_dbm_per_hz)
    devices = [device_state(f"d{i}", compute_scale=float(scales[i]), memory_bytes=float(budgets[i]), tx_power_w=power_w,
                            gain=float(gains[i]), rate_model=spec.rate_model, noise_psd_w_per_hz=noise,
                            bandwidth_hz=spec.bandwidth_hz, num_devices=k) for i in range(k)]
    return Instance(bandwidth_hz=spec.bandwidth_hz, blocks=tuple(blocks), devices=tuple(devices),
                    noise_psd_w_per_hz=noise)


def synthetic_blocks(num_blocks: int, rng: np.random.Generator, *, equal_payload: bool = True) -> tuple[BlockCost, ...]:
    """A random block profile, non-increasing in the block index like a measured one: a common
    forward cost plus a backward cost growing with depth, memory likewise."""
    forward_s = rng.uniform(0.1, 1.0)
    backward_s = np.sort(rng.uniform(0.02, 0.3, size=num_blocks).cumsum())[::-1]
    base_bytes = rng.uniform(2e8, 5e8)
    activation = np.sort(rng.uniform(2e7, 1e8, size=num_blocks).cumsum())[::-1]
    payload = np.full(num_blocks, 786432.0) if equal_payload else rng.uniform(3e5, 2e6, size=num_blocks)
    return tuple(BlockCost(compute_s=float(forward_s + b), memory_bytes=float(base_bytes + a), payload_bits=float(p))
                 for b, a, p in zip(backward_s, activation, payload))
