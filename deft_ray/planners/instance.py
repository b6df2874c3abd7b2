"""One round's planning input: :class:`BlockCost`, :class:`DeviceState` and :class:`Instance`
(docs/method.md, "Cost model").

An Instance holds the block cost profile in model order (block 0 is the LoRA of transformer layer
0, the most expensive to train), the devices with their compute scale, memory budget and uplink
channel, and the total uplink bandwidth. :mod:`deft_ray.planners.parsing` builds one from JSON.

Pure numpy: no torch, no Ray, no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from deft_ray.planners.energy import energy_floor_hz
from deft_ray.planners.rates import Channel

#: -174 dBm/Hz, the thermal noise power spectral density, in W/Hz.
DEFAULT_NOISE_PSD_W_PER_HZ = 3.98e-21


@dataclass(frozen=True, slots=True)
class BlockCost:
    """Cost of training one parameter block (one transformer layer's LoRA) on the reference device."""

    compute_s: float
    """Forward plus backward-to-this-block time of one local iteration, in seconds."""
    memory_bytes: float
    """Peak memory needed to train this block, in bytes."""
    payload_bits: float
    """Size of the block's gradient upload, in bits."""


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One edge device as the planner sees it.

    The uplink rate at bandwidth ``b`` is ``b * spectral_efficiency`` when that is given, otherwise
    Shannon with noise proportional to bandwidth,
    ``b * log2(1 + tx_power_w * channel_gain / (noise_psd * b))`` (docs/method.md, "Rate models").
    """

    name: str
    compute_scale: float
    """Compute time multiplier against the profile's reference device (larger is slower)."""
    memory_bytes: float
    """Memory budget in bytes."""
    spectral_efficiency: float | None = None
    """Fixed spectral efficiency in bit/s/Hz; selects the linear rate model."""
    tx_power_w: float | None = None
    """Transmit power in watts (Shannon rate model; with ``spectral_efficiency`` it only counts the
    upload energy)."""
    channel_gain: float | None = None
    """Channel power gain, path loss times fading (Shannon rate model)."""
    compute_power_w: float | None = None
    """Power drawn while computing, in watts (energy accounting; docs/method.md, "Energy budgets")."""
    energy_budget_j: float | None = None
    """Most energy the device may spend in a round, compute plus upload, in joules (empty: no limit).
    Its upload energy is ``tx_power_w`` times the upload time (none without a ``tx_power_w``)."""

    @property
    def rate_model(self) -> str:
        return "spectral_efficiency" if self.spectral_efficiency is not None else "shannon"


@dataclass(frozen=True)
class Instance:
    """One planning problem, in the Instance JSON's fields.

    The array views (``block_compute_s()``, ``compute_matrix_s()``, ...) are computed once and
    returned read-only, since planners call them many times per solve.
    """

    bandwidth_hz: float
    blocks: tuple[BlockCost, ...]
    devices: tuple[DeviceState, ...]
    noise_psd_w_per_hz: float = DEFAULT_NOISE_PSD_W_PER_HZ

    # ----------------------------------------------------------------- sizes and arrays
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @cached_property
    def device_names(self) -> list[str]:
        return [device.name for device in self.devices]

    def block_compute_s(self) -> np.ndarray:
        return self._arrays["compute_s"]

    def block_memory_bytes(self) -> np.ndarray:
        return self._arrays["memory_bytes"]

    def block_payload_bits(self) -> np.ndarray:
        return self._arrays["payload_bits"]

    def compute_scales(self) -> np.ndarray:
        return self._arrays["compute_scale"]

    def memory_budgets(self) -> np.ndarray:
        return self._arrays["memory_budget"]

    def compute_matrix_s(self) -> np.ndarray:
        """``(K, N)`` compute seconds of block n on device k: ``compute_scale_k * compute_s_n``."""
        return self._arrays["compute_matrix"]

    def memory_feasible(self) -> np.ndarray:
        """``(K, N)`` boolean: device k's budget holds block n."""
        return self._arrays["memory_feasible"]

    def equal_shares_hz(self) -> np.ndarray:
        """``(K,)`` the equal split ``bandwidth_hz / K`` that CRUNCH and the baselines use."""
        return self._arrays["equal_shares"]

    def channel(self) -> Channel:
        return self._arrays["channel"]

    @property
    def has_energy_budgets(self) -> bool:
        """Whether any device has an ``energy_budget_j``."""
        return any(device.energy_budget_j is not None for device in self.devices)

    def compute_powers_w(self) -> np.ndarray:
        """``(K,)`` compute power, 0 where none is given."""
        return self._arrays["compute_power"]

    def tx_powers_w(self) -> np.ndarray:
        """``(K,)`` transmit power, 0 where none is given."""
        return self._arrays["tx_power"]

    def energy_budgets_j(self) -> np.ndarray:
        """``(K,)`` per-round energy budget, ``inf`` where none is given."""
        return self._arrays["energy_budget"]

    def bandwidth_floor_hz(self) -> np.ndarray:
        """``(K, N)`` least bandwidth that keeps device k training block n within its energy
        budget (0 without a budget, ``inf`` where no bandwidth does), see
        :func:`~deft_ray.planners.energy.energy_floor_hz`."""
        return self._arrays["bandwidth_floor"]

    def pair_feasible(self) -> np.ndarray:
        """``(K, N)`` boolean: device k may train block n, its memory holds the block and the
        block's bandwidth floor fits in the band."""
        return self._arrays["pair_feasible"]

    @cached_property
    def _arrays(self) -> dict[str, Any]:
        arrays = {name: np.array([getattr(block, name) for block in self.blocks], dtype=float)
                  for name in ("compute_s", "memory_bytes", "payload_bits")}
        arrays["compute_scale"] = np.array([d.compute_scale for d in self.devices], dtype=float)
        arrays["memory_budget"] = np.array([d.memory_bytes for d in self.devices], dtype=float)
        with np.errstate(over="ignore"):
            arrays["compute_matrix"] = np.outer(arrays["compute_scale"], arrays["compute_s"])
        arrays["memory_feasible"] = arrays["memory_bytes"][None, :] <= arrays["memory_budget"][:, None]
        arrays["equal_shares"] = np.full(self.num_devices, self.bandwidth_hz / max(self.num_devices, 1))
        for name, key, missing in (("compute_power", "compute_power_w", 0.0), ("tx_power", "tx_power_w", 0.0),
                                   ("energy_budget", "energy_budget_j", np.inf)):
            arrays[name] = np.array([missing if getattr(d, key) is None else getattr(d, key)
                                     for d in self.devices], dtype=float)
        arrays["channel"] = Channel.of(self)
        arrays["bandwidth_floor"] = energy_floor_hz(arrays["channel"], arrays["compute_matrix"],
                                                    arrays["payload_bits"], arrays["compute_power"],
                                                    arrays["tx_power"], arrays["energy_budget"])
        arrays["pair_feasible"] = arrays["memory_feasible"] & (arrays["bandwidth_floor"] <= self.bandwidth_hz)
        for array in arrays.values():
            if isinstance(array, np.ndarray):
                array.setflags(write=False)
        return arrays

    # ----------------------------------------------------------------- JSON
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "instance") -> Instance:
        """Build and validate an Instance from the parsed Instance JSON.

        Raises:
            InputError: naming the field, the value and the fix, for anything malformed.
        """
        from deft_ray.planners.parsing import parse_instance

        return parse_instance(data, source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "instance") -> Instance:
        """Parse the Instance JSON ``text``.

        Raises:
            InputError: one line naming the position or field, for anything malformed (bad syntax,
                nesting too deep, integers too large for a float, non-finite numbers, ...).
        """
        from deft_ray.planners.parsing import load_json

        return cls.from_dict(load_json(text, source), source=source)

    def to_dict(self) -> dict[str, Any]:
        devices = [{k: v for k, v in asdict(device).items() if v is not None} for device in self.devices]
        return {
            "bandwidth_hz": self.bandwidth_hz,
            "noise_psd_w_per_hz": self.noise_psd_w_per_hz,
            "blocks": [asdict(block) for block in self.blocks],
            "devices": devices,
        }
