"""Paper-like device populations for planner tests, written from the paper's settings alone.

Nothing here imports deft-ray beyond the planners' data classes, so the populations cannot change
when the code under test does: the RoBERTa block profiles are read straight from the packaged JSON,
the path loss is the 3GPP macro-cell formula ``128.1 + 37.6 log10(d / km)`` dB, the transmit power
23 dBm, the noise -174 dBm/Hz, compute scales U[1, 5], memory budgets U[m_min, 1.2 m_max]
(redrawn until a one-block-per-device matching exists) and distances U[50, 500] m.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from deft_ray.edge.scenario import synthetic_blocks  # noqa: F401 - the planner tests' block profiles
from deft_ray.planners import BlockCost, DeviceState, Instance

PROFILE_DIR = Path(__file__).resolve().parents[2] / "deft_ray" / "profiles"
PROFILES = {12: "roberta-base_h200_fp32", 24: "roberta-large_h200_fp32"}
NOISE_PSD_W_PER_HZ = 10 ** (-174 / 10) / 1000
TX_POWER_W = 10 ** (23 / 10) / 1000


def roberta_blocks(num_blocks: int) -> tuple[BlockCost, ...]:
    """The raw (unsmoothed) RoBERTa-base (12) or -large (24) block profile."""
    data = json.loads((PROFILE_DIR / f"{PROFILES[num_blocks]}.json").read_text())
    return tuple(BlockCost(float(b["compute_s"]), float(b["memory_bytes"]), float(b["payload_bits"]))
                 for b in data["blocks"])


def paper_population(blocks: tuple[BlockCost, ...], num_devices: int, rng: np.random.Generator, *,
                     bandwidth_hz: float = 1e7, rayleigh: bool = False, rate_model: str = "shannon",
                     distance_m: tuple[float, float] = (50.0, 500.0),
                     memory_fraction: tuple[float, float] = (0.0, 1.2)) -> Instance:
    """One paper-like population of ``num_devices`` devices for ``blocks``; memory budgets are drawn
    from ``U[m_min + lo (m_max - m_min), hi m_max]`` for ``memory_fraction = (lo, hi)``."""
    memory = np.array([b.memory_bytes for b in blocks])
    ordered = np.sort(memory)[::-1]
    scales = rng.uniform(1.0, 5.0, num_devices)
    distances = rng.uniform(*distance_m, num_devices)
    gains = 10 ** (-(128.1 + 37.6 * np.log10(distances / 1000.0)) / 10)
    if rayleigh:
        gains = gains * rng.exponential(1.0, num_devices)
    for _ in range(1000):
        budgets = rng.uniform(memory.min() + memory_fraction[0] * (memory.max() - memory.min()),
                              memory_fraction[1] * memory.max(), num_devices)
        if all((budgets >= ordered[n]).sum() >= n + 1 for n in range(min(len(blocks), num_devices))):
            break
    devices = []
    for k in range(num_devices):
        if rate_model == "shannon":
            channel = dict(tx_power_w=TX_POWER_W, channel_gain=float(gains[k]))
        else:
            snr = TX_POWER_W * gains[k] / (NOISE_PSD_W_PER_HZ * bandwidth_hz / num_devices)
            channel = dict(spectral_efficiency=float(math.log2(1 + snr)))
        devices.append(DeviceState(name=f"d{k}", compute_scale=float(scales[k]), memory_bytes=float(budgets[k]),
                                   **channel))
    return Instance(bandwidth_hz=bandwidth_hz, blocks=blocks, devices=tuple(devices),
                    noise_psd_w_per_hz=NOISE_PSD_W_PER_HZ)


def paper_family(count: int, seed: int, *, max_factor: int = 4) -> list[Instance]:
    """``count`` populations cycling through both rate models, with and without Rayleigh fading,
    N = 12 and 24, K from N to ``max_factor * N`` and bandwidths of 1-20 MHz."""
    rng = np.random.default_rng(seed)
    profiles = {n: roberta_blocks(n) for n in PROFILES}
    family = []
    for i in range(count):
        num_blocks = (12, 24)[i % 2]
        family.append(paper_population(
            profiles[num_blocks], int(rng.integers(num_blocks, max_factor * num_blocks + 1)), rng,
            bandwidth_hz=float(rng.uniform(1e6, 2e7)), rayleigh=bool((i // 2) % 2),
            rate_model=("shannon", "spectral_efficiency")[(i // 4) % 2]))
    return family
