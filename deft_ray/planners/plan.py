"""A round's allocation (:class:`Plan`) and the one cost model that scores it (:func:`evaluate`,
docs/method.md, "Cost model").

Every scheme, test and benchmark scores a plan with the same :func:`evaluate`;
:func:`pair_latency_s` is the same cost model for one block per device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deft_ray.errors import InputError
from deft_ray.planners.energy import ENERGY_TOLERANCE, round_energy_j
from deft_ray.planners.instance import Instance

#: Relative slack allowed when checking that shares sum to at most the total bandwidth.
BANDWIDTH_TOLERANCE = 1e-7


def pair_latency_s(instance: Instance, bandwidth_hz: np.ndarray) -> np.ndarray:
    """``(K, N)`` latency of device k training block n alone with bandwidth ``bandwidth_hz[k]``:
    ``compute_scale_k * compute_s_n + payload_bits_n / R_k(bandwidth_hz[k])`` (docs/method.md,
    "Cost model"); ``inf`` where the rate is zero."""
    rate = instance.channel().rate_bps(np.asarray(bandwidth_hz, dtype=float))
    with np.errstate(divide="ignore", over="ignore"):
        return instance.compute_matrix_s() + instance.block_payload_bits()[None, :] / rate[:, None]


@dataclass(frozen=True, slots=True)
class Plan:
    """One round's allocation, in the Plan JSON's fields.

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
    device_energy_j: Mapping[str, float] = field(default_factory=dict)
    """Each involved device's energy in the round (docs/method.md, "Energy budgets")."""

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
            "device_energy_j": dict(self.device_energy_j),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "plan") -> Plan:
        """The Plan that :meth:`to_dict` wrote (``Plan.from_dict(plan.to_dict()) == plan``).

        Raises:
            InputError: naming the field, for a missing field, a wrong type, a block index that is
                not a non-negative integer or a number that is not a float.
        """
        if not isinstance(data, Mapping):
            raise InputError(source, type(data).__name__, "a plan must be an object", "give the Plan JSON object")
        missing = [key for key in ("scheme", "assignment", "bandwidth_hz", "device_latency_s",
                                   "round_latency_s", "solve_time_s") if key not in data]
        if missing:
            raise InputError(f"{source}.{missing[0]}", None, "missing", f"add {missing[0]!r}")
        if not isinstance(data["scheme"], str):
            raise InputError(f"{source}.scheme", data["scheme"], "not a string", "give the scheme's name")
        diagnostics = data.get("diagnostics", ())
        if not isinstance(diagnostics, (list, tuple)) or not all(isinstance(d, str) for d in diagnostics):
            raise InputError(f"{source}.diagnostics", diagnostics, "not a list of strings", "give a list of strings")
        return cls(
            scheme=data["scheme"],
            assignment={name: _block_indices(blocks, f"{source}.assignment.{name}")
                        for name, blocks in _mapping(data["assignment"], f"{source}.assignment").items()},
            bandwidth_hz={name: _float(v, f"{source}.bandwidth_hz.{name}")
                          for name, v in _mapping(data["bandwidth_hz"], f"{source}.bandwidth_hz").items()},
            device_latency_s={name: _float(v, f"{source}.device_latency_s.{name}")
                              for name, v in _mapping(data["device_latency_s"], f"{source}.device_latency_s").items()},
            round_latency_s=_float(data["round_latency_s"], f"{source}.round_latency_s"),
            solve_time_s=_float(data["solve_time_s"], f"{source}.solve_time_s"),
            diagnostics=tuple(diagnostics),
            device_energy_j={name: _float(v, f"{source}.device_energy_j.{name}")
                             for name, v in _mapping(data.get("device_energy_j", {}),
                                                     f"{source}.device_energy_j").items()},
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InputError(where, value, "not an object keyed by device name", "give an object")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(where, value, "not a number", "give a number")
    try:
        return float(value)
    except OverflowError:
        raise InputError(where, "an integer beyond the float range", "not a number", "give a float") from None


def _block_indices(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise InputError(where, value, "not a list of block indices", "give a list of integers")
    indices = []
    for index in value:
        if isinstance(index, float) and index.is_integer():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InputError(where, value, "not a list of non-negative integers", "give block indices")
        indices.append(index)
    return tuple(indices)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The latencies a plan achieves on an instance, and whatever makes it infeasible."""

    compute_s: Mapping[str, float]
    upload_s: Mapping[str, float]
    device_latency_s: Mapping[str, float]
    round_latency_s: float
    bottleneck_device: str
    violations: tuple[str, ...] = field(default=())
    energy_j: Mapping[str, float] = field(default_factory=dict)
    """``compute_power_w * compute_s + tx_power_w * upload_s`` of each involved device."""

    @property
    def feasible(self) -> bool:
        return not self.violations


def evaluate(instance: Instance, plan: Plan, *, max_blocks_per_device: int | None = None,
             replicated: bool = False) -> Evaluation:
    """Score ``plan`` on ``instance`` with the cost model (docs/method.md, "Cost model").

    A device training the block set S takes ``compute_scale * max_{n in S} compute_s_n`` seconds
    (the lowest block sets the backward pass), needs ``max_{n in S} memory_bytes_n`` and uploads
    ``sum_{n in S} payload_bits_n`` at its rate; the round takes the largest device latency.

    Each device's energy is ``compute_power_w * compute_s + tx_power_w * upload_s``
    (docs/method.md, "Energy budgets").

    Violations (a device that cannot finish in finite time, memory, an energy budget, coverage of every block exactly once, total bandwidth, an unknown device, a
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
    with np.errstate(divide="ignore", over="ignore"):
        upload_s = set_payload / rate
    latency = compute_s + upload_s
    for i in np.flatnonzero(~np.isfinite(latency)):
        violations.append(f"device {names[i]!r} cannot finish blocks {blocks_of[i]} in finite time "
                          f"at {bandwidth[i]:.4g} Hz")

    over = set_memory > instance.memory_budgets()[rows]
    for i in np.flatnonzero(over):
        violations.append(f"device {names[i]!r} needs {set_memory[i]:.4g} bytes for blocks "
                          f"{blocks_of[i]} but its budget is {instance.memory_budgets()[rows[i]]:.4g}")
    energy = round_energy_j(instance.compute_powers_w()[rows], compute_s, instance.tx_powers_w()[rows], upload_s)
    budget = instance.energy_budgets_j()[rows]
    for i in np.flatnonzero(~(energy <= budget * (1 + ENERGY_TOLERANCE))):
        violations.append(f"device {names[i]!r} spends {energy[i]:.6g} J on blocks {blocks_of[i]} but its energy "
                          f"budget is {budget[i]:.6g} J")
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
        energy_j={name: float(e) for name, e in zip(names, energy)},
    )


