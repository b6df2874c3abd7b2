"""The Instance JSON: from text to a validated :class:`~deft_ray.planners.instance.Instance`.

Every malformed input becomes one :class:`~deft_ray.errors.InputError` naming the field or
position, the value and the fix: bad syntax, nesting too deep for the parser, non-finite numbers
(``NaN``, ``Infinity``, a literal beyond the float range such as a 400-digit integer), wrong types,
unknown or missing fields, and device names that are not valid text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from deft_ray.errors import InputError
from deft_ray.planners.instance import (
    DEFAULT_NOISE_PSD_W_PER_HZ,
    BlockCost,
    DeviceState,
    Instance,
)

_DEVICE_FIELDS = {"name", "compute_scale", "memory_bytes", "spectral_efficiency", "tx_power_w", "channel_gain",
                  "compute_power_w", "energy_budget_j"}
_BLOCK_FIELDS = {"compute_s", "memory_bytes", "payload_bits"}
_TOP_FIELDS = {"bandwidth_hz", "noise_psd_w_per_hz", "blocks", "devices"}


def load_json(text: str, source: str = "instance") -> Any:
    """``json.loads(text)``, with every failure as an :class:`InputError`.

    Integers are read as floats (a literal beyond the float range becomes ``inf`` and is then
    refused as not finite, instead of an arbitrary-precision integer), and ``NaN``/``Infinity``
    are refused where they stand.
    """
    def refuse_constant(name: str) -> Any:
        raise InputError(source, name, "is not a finite number", "give finite numbers only")

    try:
        return json.loads(text, parse_int=float, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        lines = text.splitlines() or [""]
        raise InputError(
            f"{source} line {error.lineno} column {error.colno}", lines[min(error.lineno, len(lines)) - 1],
            f"not valid JSON ({error.msg})", "fix the JSON syntax at that position",
        ) from None
    except InputError:
        raise
    except RecursionError:
        raise InputError(source, f"{len(text)} characters", "nests arrays or objects too deeply to parse",
                         "give a flat Instance JSON object") from None
    except (ValueError, OverflowError, MemoryError) as error:
        raise InputError(source, f"{len(text)} characters", f"cannot be parsed ({type(error).__name__})",
                         "give a valid Instance JSON object") from None


def number(data: Mapping[str, Any], key: str, where: str, *, positive: bool = True,
           required: bool = True) -> float | None:
    """``data[key]`` as a finite float (positive, or non-negative with ``positive=False``)."""
    if key not in data:
        if required:
            raise InputError(f"{where}.{key}", None, "missing", f"add {key!r} to {where}")
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}.{key}", value, "not a finite number", "give a number")
    try:
        as_float = float(value)
    except OverflowError:
        raise InputError(f"{where}.{key}", "an integer beyond the float range", "not a finite number",
                         "give a number below 1.8e308") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)  # integers read as floats (load_json) are shown as they were written
    if not math.isfinite(as_float):
        raise InputError(f"{where}.{key}", value, "not a finite number", "give a number")
    if positive and as_float <= 0:
        raise InputError(f"{where}.{key}", value, "must be positive", "give a value above 0")
    if not positive and as_float < 0:
        raise InputError(f"{where}.{key}", value, "must not be negative", "give a value of 0 or more")
    return as_float


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
            compute_s=number(raw, "compute_s", at),
            memory_bytes=number(raw, "memory_bytes", at, positive=False),
            payload_bits=number(raw, "payload_bits", at),
        ))
    return tuple(blocks)


def _device_name(raw: Mapping[str, Any], k: int, where: str) -> str:
    name = raw.get("name", f"d{k}")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name", name, "not a non-empty string", "name the device")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}.name", name, "is not valid text (a lone surrogate escape)",
                         "name the device with printable characters") from None
    return name


def parse_instance(data: Any, source: str = "instance") -> Instance:
    """Validate the parsed Instance JSON ``data`` (see :meth:`Instance.from_dict`)."""
    if not isinstance(data, dict):
        raise InputError(source, type(data).__name__, "the instance must be a JSON object",
                         "give an object with bandwidth_hz, blocks and devices")
    _unknown_keys(data, _TOP_FIELDS, source)
    bandwidth = number(data, "bandwidth_hz", source)
    noise = number(data, "noise_psd_w_per_hz", source, required=False) or DEFAULT_NOISE_PSD_W_PER_HZ
    for key in ("blocks", "devices"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise InputError(f"{source}.{key}", data.get(key), "missing or empty", f"give a non-empty list of {key}")
    blocks = parse_blocks(data["blocks"])
    devices = []
    seen: set[str] = set()
    for k, raw in enumerate(data["devices"]):
        where = f"devices[{k}]"
        if not isinstance(raw, dict):
            raise InputError(where, raw, "not an object", "give name, compute_scale, memory_bytes and a channel")
        _unknown_keys(raw, _DEVICE_FIELDS, where)
        name = _device_name(raw, k, where)
        if name in seen:
            raise InputError(f"{where}.name", name, "duplicate device name", "give every device its own name")
        seen.add(name)
        efficiency = number(raw, "spectral_efficiency", where, required=False)
        power = number(raw, "tx_power_w", where, required=False)
        gain = number(raw, "channel_gain", where, required=False)
        if efficiency is None and (power is None or gain is None):
            raise InputError(where, name, "has no uplink channel",
                             "give spectral_efficiency, or both tx_power_w and channel_gain")
        if efficiency is not None and gain is not None:
            raise InputError(where, name, "gives both rate models",
                             "give spectral_efficiency or tx_power_w/channel_gain, not both "
                             "(with spectral_efficiency, tx_power_w only counts upload energy)")
        devices.append(DeviceState(
            name=name,
            compute_scale=number(raw, "compute_scale", where),
            memory_bytes=number(raw, "memory_bytes", where),
            spectral_efficiency=efficiency, tx_power_w=power, channel_gain=gain,
            compute_power_w=number(raw, "compute_power_w", where, positive=False, required=False),
            energy_budget_j=number(raw, "energy_budget_j", where, required=False),
        ))
    return Instance(bandwidth_hz=bandwidth, blocks=blocks, devices=tuple(devices), noise_psd_w_per_hz=noise)
