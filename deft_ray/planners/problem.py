"""The planning problem: an :class:`Instance`, a :class:`Plan`, and one :func:`evaluate`.

An Instance is one round's planning input (PAPER.md section 2): the block cost profile in model
order (block 0 is the LoRA of transformer layer 0, the most expensive to train), the devices with
their compute scale, memory budget and uplink channel, and the total uplink bandwidth. A Plan says
which device trains which blocks and how much bandwidth each involved device gets. Every scheme,
test and benchmark scores a plan with the same :func:`evaluate`.

This module is pure numpy: no torch, no Ray, no I/O beyond parsing a JSON string.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import lambertw

from deft_ray.errors import InfeasibleError, InputError

#: -174 dBm/Hz, the thermal noise power spectral density, in W/Hz.
DEFAULT_NOISE_PSD_W_PER_HZ = 3.98e-21
#: Relative slack allowed when checking that shares sum to at most the total bandwidth.
BANDWIDTH_TOLERANCE = 1e-7


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

    The uplink rate at bandwidth ``b`` is ``b * spectral_efficiency`` when that is given (PAPER.md
    section 2.4, variant b), otherwise Shannon with noise proportional to bandwidth,
    ``b * log2(1 + tx_power_w * channel_gain / (noise_psd * b))`` (variant a).
    """

    name: str
    compute_scale: float
    """Compute time multiplier against the profile's reference device (larger is slower)."""
    memory_bytes: float
    """Memory budget in bytes."""
    spectral_efficiency: float | None = None
    """Fixed spectral efficiency in bit/s/Hz; selects the linear rate model."""
    tx_power_w: float | None = None
    """Transmit power in watts (Shannon rate model)."""
    channel_gain: float | None = None
    """Channel power gain, path loss times fading (Shannon rate model)."""

    @property
    def rate_model(self) -> str:
        return "spectral_efficiency" if self.spectral_efficiency is not None else "shannon"


@dataclass(frozen=True)
class Instance:
    """One planning problem, the Instance JSON of DESIGN.md.

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

    def channel(self) -> "Channel":
        return self._arrays["channel"]

    @cached_property
    def _arrays(self) -> dict[str, Any]:
        arrays = {name: np.array([getattr(block, name) for block in self.blocks], dtype=float)
                  for name in ("compute_s", "memory_bytes", "payload_bits")}
        arrays["compute_scale"] = np.array([d.compute_scale for d in self.devices], dtype=float)
        arrays["memory_budget"] = np.array([d.memory_bytes for d in self.devices], dtype=float)
        arrays["compute_matrix"] = np.outer(arrays["compute_scale"], arrays["compute_s"])
        arrays["memory_feasible"] = arrays["memory_bytes"][None, :] <= arrays["memory_budget"][:, None]
        for array in arrays.values():
            array.setflags(write=False)
        arrays["channel"] = Channel.of(self)
        return arrays

    # ----------------------------------------------------------------- JSON
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "instance") -> "Instance":
        """Build and validate an Instance from the parsed Instance JSON.

        Raises:
            InputError: naming the field, the value and the fix, for anything malformed.
        """
        return _parse_instance(data, source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "instance") -> "Instance":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            lines = text.splitlines() or [""]
            raise InputError(
                f"{source} line {error.lineno} column {error.colno}", lines[min(error.lineno, len(lines)) - 1],
                f"not valid JSON ({error.msg})", "fix the JSON syntax at that position",
            ) from None
        return cls.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        devices = []
        for device in self.devices:
            entry = {k: v for k, v in asdict(device).items() if v is not None}
            devices.append(entry)
        return {
            "bandwidth_hz": self.bandwidth_hz,
            "noise_psd_w_per_hz": self.noise_psd_w_per_hz,
            "blocks": [asdict(block) for block in self.blocks],
            "devices": devices,
        }


# --------------------------------------------------------------------------------------- rates
@dataclass(frozen=True, slots=True)
class Channel:
    """Vectorised uplink rate model of all K devices of an instance.

    Device k uses the linear model ``R = b * s_k`` where ``s_k`` is finite, and Shannon
    ``R = b log2(1 + gamma_k / b)`` with ``gamma_k = p_k g_k / N0`` (in Hz) otherwise.
    """

    spectral_efficiency: np.ndarray
    """``s_k`` in bit/s/Hz, NaN for Shannon devices."""
    snr_hz: np.ndarray
    """``gamma_k = p_k g_k / N0`` in Hz, NaN for linear devices."""

    @classmethod
    def of(cls, instance: Instance) -> "Channel":
        linear = np.array([d.spectral_efficiency if d.spectral_efficiency is not None else np.nan
                           for d in instance.devices], dtype=float)
        gamma = np.array([np.nan if d.spectral_efficiency is not None
                          else d.tx_power_w * d.channel_gain / instance.noise_psd_w_per_hz
                          for d in instance.devices], dtype=float)
        return cls(spectral_efficiency=linear, snr_hz=gamma)

    @property
    def is_linear(self) -> np.ndarray:
        return ~np.isnan(self.spectral_efficiency)

    def max_rate_bps(self) -> np.ndarray:
        """Rate as bandwidth grows without bound: infinite (linear) or ``gamma / ln 2`` (Shannon)."""
        return np.where(self.is_linear, np.inf, self.snr_hz / math.log(2))

    def take(self, device_index: np.ndarray) -> "Channel":
        """The channel of the devices ``device_index`` (any integer array shape); the rate methods
        then work elementwise on arrays of that shape."""
        return Channel(spectral_efficiency=self.spectral_efficiency[device_index],
                       snr_hz=self.snr_hz[device_index])

    def rate_bps(self, bandwidth_hz: np.ndarray) -> np.ndarray:
        """Uplink rate at the given bandwidth, elementwise (broadcast against the device arrays)."""
        b = np.asarray(bandwidth_hz, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            shannon = b * np.log2(1.0 + self.snr_hz / b)
        rate = np.where(np.isnan(self.spectral_efficiency), shannon, b * self.spectral_efficiency)
        return np.where(b > 0, rate, 0.0)

    def bandwidth_for_rate_hz(self, rate_bps: np.ndarray) -> np.ndarray:
        """The bandwidth needed to reach ``rate_bps``, elementwise (inverse of :meth:`rate_bps`).

        Linear: ``r / s``. Shannon: with ``a = r ln2 / gamma < 1``, ``b = gamma / (u - 1)`` where
        ``u = -W_{-1}(-a e^{-a}) / a`` (Lambert W, lower branch), the non-trivial root of
        ``ln u = a (u - 1)``. ``inf`` where the rate is at or above the capacity ``gamma / ln 2``.
        """
        r = np.asarray(rate_bps, dtype=float)
        s, gamma = self.spectral_efficiency, self.snr_hz
        if not np.isnan(s).any():
            with np.errstate(divide="ignore", invalid="ignore"):
                return r / s
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            linear = r / s
            a = r * math.log(2) / gamma
            inside = (a > 0) & (a < 1)
            a_safe = np.where(inside, a, 0.5)
            u = -np.real(lambertw(-a_safe * np.exp(-a_safe), k=-1)) / a_safe
            b = gamma / (u - 1.0)
            # W_{-1} loses precision near its branch point (rates near capacity): Newton steps on
            # R(b) = r; R is concave and increasing, so after one step they approach from below.
            for _ in range(4):
                spectral = np.log2(1.0 + gamma / b)
                slope = spectral - gamma / ((b + gamma) * math.log(2))
                b = b - (b * spectral - r) / slope
            shannon = np.where(inside & (b > 0) & np.isfinite(b), b, np.where(a <= 0, 0.0, np.inf))
        return np.where(np.isnan(s), shannon, linear)


def pair_latency_s(instance: Instance, bandwidth_hz: np.ndarray) -> np.ndarray:
    """``(K, N)`` latency of device k training block n alone with bandwidth ``bandwidth_hz[k]``:
    ``compute_scale_k * compute_s_n + payload_bits_n / R_k(bandwidth_hz[k])`` (PAPER.md section
    2.5, for one block)."""
    rate = instance.channel().rate_bps(np.asarray(bandwidth_hz, dtype=float))
    with np.errstate(divide="ignore"):
        return instance.compute_matrix_s() + instance.block_payload_bits()[None, :] / rate[:, None]


# ---------------------------------------------------------------------------------------- plan
@dataclass(frozen=True, slots=True)
class Plan:
    """One round's allocation, the Plan JSON of DESIGN.md.

    ``assignment`` and ``bandwidth_hz`` name only the devices that take part in the round.
    ``diagnostics`` carries what the planner wants its user to know (for example that a noisy
    profile was made monotone).
    """

    scheme: str
    assignment: Mapping[str, tuple[int, ...]]
    bandwidth_hz: Mapping[str, float]
    device_latency_s: Mapping[str, float]
    round_latency_s: float
    solve_time_s: float
    diagnostics: tuple[str, ...] = ()

    @property
    def bottleneck_device(self) -> str:
        return max(self.device_latency_s, key=self.device_latency_s.get)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "assignment": {name: list(blocks) for name, blocks in self.assignment.items()},
            "bandwidth_hz": dict(self.bandwidth_hz),
            "device_latency_s": dict(self.device_latency_s),
            "round_latency_s": self.round_latency_s,
            "solve_time_s": self.solve_time_s,
            "diagnostics": list(self.diagnostics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Plan":
        return cls(
            scheme=str(data["scheme"]),
            assignment={k: tuple(int(i) for i in v) for k, v in data["assignment"].items()},
            bandwidth_hz={k: float(v) for k, v in data["bandwidth_hz"].items()},
            device_latency_s={k: float(v) for k, v in data["device_latency_s"].items()},
            round_latency_s=float(data["round_latency_s"]),
            solve_time_s=float(data["solve_time_s"]),
            diagnostics=tuple(data.get("diagnostics", ())),
        )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The latencies a plan achieves on an instance, and whatever makes it infeasible."""

    compute_s: Mapping[str, float]
    upload_s: Mapping[str, float]
    device_latency_s: Mapping[str, float]
    round_latency_s: float
    bottleneck_device: str
    violations: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        return not self.violations


def evaluate(instance: Instance, plan: Plan, *, max_blocks_per_device: int | None = None,
             replicated: bool = False) -> Evaluation:
    """Score ``plan`` on ``instance`` with the cost model of PAPER.md section 2.

    A device training the block set S takes ``compute_scale * max_{n in S} compute_s_n`` seconds
    (the lowest block sets the backward pass), needs ``max_{n in S} memory_bytes_n`` and uploads
    ``sum_{n in S} payload_bits_n`` at its rate; the round takes the largest device latency.

    Violations (memory, coverage of every block exactly once, total bandwidth, an unknown device, a
    device over ``max_blocks_per_device``) are listed, not raised, so tests can assert on them.
    With ``replicated=True`` (federated schemes, where several devices train the same block) the
    coverage rule is every block at least once.
    """
    index = {name: k for k, name in enumerate(instance.device_names)}
    compute = instance.block_compute_s()
    memory = instance.block_memory_bytes()
    payload = instance.block_payload_bits()
    channel = instance.channel()
    violations: list[str] = []

    counts = np.zeros(instance.num_blocks, dtype=int)
    names, blocks_of = [], []
    for name, blocks in plan.assignment.items():
        if name not in index:
            violations.append(f"device {name!r} is not in the instance")
            continue
        if not blocks:
            continue
        bad = [n for n in blocks if not 0 <= n < instance.num_blocks]
        if bad:
            violations.append(f"device {name!r} has block indices {bad} outside 0..{instance.num_blocks - 1}")
            continue
        counts[list(blocks)] += 1
        names.append(name)
        blocks_of.append(list(blocks))
        if max_blocks_per_device is not None and len(blocks) > max_blocks_per_device:
            violations.append(f"device {name!r} takes {len(blocks)} blocks, more than {max_blocks_per_device}")
    if replicated:
        for n in np.flatnonzero(counts < 1):
            violations.append(f"block {n} is assigned to no device")
    else:
        for n in np.flatnonzero(counts != 1):
            violations.append(f"block {n} is assigned {counts[n]} times instead of once")

    rows = np.array([index[name] for name in names], dtype=int)
    bandwidth = np.array([float(plan.bandwidth_hz.get(name, 0.0)) for name in names])
    set_compute = np.array([compute[b].max() for b in blocks_of], dtype=float)
    set_memory = np.array([memory[b].max() for b in blocks_of], dtype=float)
    set_payload = np.array([payload[b].sum() for b in blocks_of], dtype=float)

    compute_s = instance.compute_scales()[rows] * set_compute
    rate = channel.take(rows).rate_bps(bandwidth)
    with np.errstate(divide="ignore"):
        upload_s = set_payload / rate
    latency = compute_s + upload_s

    over = set_memory > instance.memory_budgets()[rows]
    for i in np.flatnonzero(over):
        violations.append(f"device {names[i]!r} needs {set_memory[i]:.4g} bytes for blocks "
                          f"{blocks_of[i]} but its budget is {instance.memory_budgets()[rows[i]]:.4g}")
    total = float(sum(max(float(b), 0.0) for b in plan.bandwidth_hz.values()))
    if total > instance.bandwidth_hz * (1 + BANDWIDTH_TOLERANCE):
        violations.append(f"bandwidth shares sum to {total:.6g} Hz, above the total {instance.bandwidth_hz:.6g} Hz")
    if any(float(b) < 0 for b in plan.bandwidth_hz.values()):
        violations.append("a bandwidth share is negative")

    latency_map = {name: float(t) for name, t in zip(names, latency)}
    round_latency = float(latency.max()) if names else math.inf
    return Evaluation(
        compute_s={name: float(t) for name, t in zip(names, compute_s)},
        upload_s={name: float(t) for name, t in zip(names, upload_s)},
        device_latency_s=latency_map,
        round_latency_s=round_latency,
        bottleneck_device=max(latency_map, key=latency_map.get) if names else "",
        violations=tuple(violations),
    )


# ----------------------------------------------------------------------------------- monotone
def make_monotone(instance: Instance) -> tuple[Instance, tuple[str, ...]]:
    """Return the instance with compute and memory non-increasing in the block index (see
    :func:`make_blocks_monotone`), and the diagnostics saying what was raised."""
    blocks, notes = make_blocks_monotone(instance.blocks)
    return (replace(instance, blocks=blocks), notes) if notes else (instance, ())


def make_blocks_monotone(blocks: Sequence[BlockCost]) -> tuple[tuple[BlockCost, ...], tuple[str, ...]]:
    """Make a block profile's compute and memory non-increasing in the block index.

    Measured profiles wiggle with timer noise, but the planners rely on the monotonicity of
    PAPER.md section 4 (a block nearer the input costs at least as much as one above it). Each
    block's cost is raised to the largest cost of the blocks above it (a suffix maximum), which
    never under-estimates a block. The notes say which blocks were raised, and by how much.
    """
    notes: list[str] = []
    blocks = list(blocks)
    for field_name in ("compute_s", "memory_bytes"):
        values = np.array([getattr(b, field_name) for b in blocks], dtype=float)
        smoothed = np.maximum.accumulate(values[::-1])[::-1]
        raised = np.flatnonzero(smoothed > values)
        if raised.size:
            worst = float(np.max((smoothed[raised] - values[raised]) / values[raised]))
            notes.append(f"profile {field_name} made monotone in depth: raised block(s) "
                         f"{raised.tolist()} by up to {worst:.1%}")
            blocks = [replace(b, **{field_name: float(v)}) for b, v in zip(blocks, smoothed)]
    return tuple(blocks), tuple(notes)


# ----------------------------------------------------------------------------------- feasibility
def check_matching_feasible(instance: Instance) -> None:
    """Raise :class:`InfeasibleError` unless a one-block-per-device matching exists.

    ``instance`` must have a monotone profile (see :func:`make_monotone`). With memory non-increasing in the block index, device k can hold exactly the blocks from
    ``first_k`` on, so the binding Hall sets are the prefixes {0..n}: a matching exists iff, for every n,
    at least ``n + 1`` devices can hold block n (PAPER.md section 4, checking step at an infinite threshold).
    """
    n_blocks, n_devices = instance.num_blocks, instance.num_devices
    if n_devices < n_blocks:
        raise InfeasibleError(
            f"devices: {n_devices} devices for {n_blocks} blocks; one-block-per-device schemes need "
            f"at least {n_blocks} devices; add devices or use a scheme that gives a device several blocks")
    memory = instance.block_memory_bytes()
    budgets = instance.memory_budgets()
    holders = (memory[None, :] <= budgets[:, None]).sum(axis=0)
    largest = int(np.argmax(budgets))
    for n in range(n_blocks):
        if holders[n] == 0:
            raise InfeasibleError(
                f"blocks[{n}].memory_bytes = {memory[n]:.4g}: no device can hold it; the largest "
                f"budget is {budgets[largest]:.4g} bytes (device {instance.devices[largest].name!r}); "
                f"raise a device's memory_bytes to at least {memory[n]:.4g}")
    for n in range(n_blocks):
        able = int((budgets >= memory[n]).sum())
        if able < n + 1:
            raise InfeasibleError(
                f"memory budgets: blocks 0..{n} each need at least {memory[n]:.4g} bytes but only "
                f"{able} device(s) have that much; give at least {n + 1} devices {memory[n]:.4g} bytes")


# ----------------------------------------------------------------------------------- parsing
_DEVICE_FIELDS = {"name", "compute_scale", "memory_bytes", "spectral_efficiency", "tx_power_w", "channel_gain"}
_BLOCK_FIELDS = {"compute_s", "memory_bytes", "payload_bits"}
_TOP_FIELDS = {"bandwidth_hz", "noise_psd_w_per_hz", "blocks", "devices"}


def _number(data: Mapping[str, Any], key: str, where: str, *, positive: bool = True,
            required: bool = True) -> float | None:
    if key not in data:
        if required:
            raise InputError(f"{where}.{key}", None, "missing", f"add {key!r} to {where}")
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}.{key}", value, "not a finite number", "give a number")
    if positive and value <= 0:
        raise InputError(f"{where}.{key}", value, "must be positive", "give a value above 0")
    if not positive and value < 0:
        raise InputError(f"{where}.{key}", value, "must not be negative", "give a value of 0 or more")
    return float(value)


def _unknown_keys(data: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise InputError(f"{where}.{extra[0]}", data[extra[0]], "unknown field",
                         f"use only {', '.join(sorted(known))}")


def parse_blocks(raw_blocks: Any, where: str = "blocks") -> tuple[BlockCost, ...]:
    """Validate a list of blocks in the Instance JSON's format (also a profile file's ``blocks``)."""
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise InputError(where, raw_blocks, "missing or empty", "give a non-empty list of blocks")
    blocks = []
    for n, raw in enumerate(raw_blocks):
        at = f"{where}[{n}]"
        if not isinstance(raw, dict):
            raise InputError(at, raw, "not an object", "give compute_s, memory_bytes and payload_bits")
        _unknown_keys(raw, _BLOCK_FIELDS, at)
        blocks.append(BlockCost(
            compute_s=_number(raw, "compute_s", at),
            memory_bytes=_number(raw, "memory_bytes", at, positive=False),
            payload_bits=_number(raw, "payload_bits", at),
        ))
    return tuple(blocks)


def _parse_instance(data: Any, source: str) -> Instance:
    if not isinstance(data, dict):
        raise InputError(source, type(data).__name__, "the instance must be a JSON object",
                         "give an object with bandwidth_hz, blocks and devices")
    _unknown_keys(data, _TOP_FIELDS, source)
    bandwidth = _number(data, "bandwidth_hz", source)
    noise = _number(data, "noise_psd_w_per_hz", source, required=False) or DEFAULT_NOISE_PSD_W_PER_HZ
    devices = []
    for key in ("blocks", "devices"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise InputError(f"{source}.{key}", data.get(key), "missing or empty", f"give a non-empty list of {key}")
    blocks = parse_blocks(data["blocks"])
    seen: set[str] = set()
    for k, raw in enumerate(data["devices"]):
        where = f"devices[{k}]"
        if not isinstance(raw, dict):
            raise InputError(where, raw, "not an object", "give name, compute_scale, memory_bytes and a channel")
        _unknown_keys(raw, _DEVICE_FIELDS, where)
        name = raw.get("name", f"d{k}")
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}.name", name, "not a non-empty string", "name the device")
        if name in seen:
            raise InputError(f"{where}.name", name, "duplicate device name", "give every device its own name")
        seen.add(name)
        efficiency = _number(raw, "spectral_efficiency", where, required=False)
        power = _number(raw, "tx_power_w", where, required=False)
        gain = _number(raw, "channel_gain", where, required=False)
        if efficiency is None and (power is None or gain is None):
            raise InputError(where, name, "has no uplink channel",
                             "give spectral_efficiency, or both tx_power_w and channel_gain")
        if efficiency is not None and (power is not None or gain is not None):
            raise InputError(where, name, "gives both rate models",
                             "give spectral_efficiency or tx_power_w/channel_gain, not both")
        devices.append(DeviceState(
            name=name,
            compute_scale=_number(raw, "compute_scale", where),
            memory_bytes=_number(raw, "memory_bytes", where),
            spectral_efficiency=efficiency, tx_power_w=power, channel_gain=gain,
        ))
    return Instance(bandwidth_hz=bandwidth, blocks=blocks, devices=tuple(devices), noise_psd_w_per_hz=noise)
