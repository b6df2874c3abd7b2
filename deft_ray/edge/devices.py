"""What an emulated device is: its compute speed, memory budget, radio and the Ray resources it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One emulated device, fixed for the run."""

    name: str
    compute_scale: float
    """Emulated compute time = this x the reference (profile) time."""
    memory_budget_bytes: float
    distance_m: float
    tx_power_w: float
    compute_power_w: float = 0.0
    """Watts drawn while computing: a round's energy is this x compute seconds + tx_power_w x upload seconds."""
    energy_budget_j: float | None = None
    """Most joules a round may cost the device (the planners respect it), or no limit."""
    num_cpus: float = 0.0
    num_gpus: float = 0.0
    ray_memory_bytes: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    speed_mps: float = 0.0
    """Mobility: metres per emulated second within ``distance_range_m`` (0: static)."""
    distance_range_m: tuple[float, float] | None = None
    """The group's distance range, the bounds of its mobility."""
    mean_online_s: float | None = None
    """Availability: mean online and offline sojourns, emulated seconds (``None``: always online)."""
    mean_offline_s: float | None = None
