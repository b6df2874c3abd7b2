"""Frozen records that cross actor boundaries: what a device is, what it is asked, what it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One emulated device, fixed for the run."""

    name: str
    compute_scale: float
    """Emulated compute time = this x the reference (profile) time."""
    memory_budget_bytes: float
    distance_m: float
    tx_power_w: float
    num_cpus: float = 0.0
    num_gpus: float = 0.0
    ray_memory_bytes: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """A device's job for one round (1-based ``round_idx``)."""

    round_idx: int
    blocks: tuple[int, ...]
    bandwidth_hz: float
    rate_bps: float
    """Uplink rate at that bandwidth this round (channel and fading included)."""
    planned_compute_s: float
    """Profile prediction ``compute_scale * compute_s`` of the lowest block (times ``local_steps``
    for a federated round): the emulated compute time (under the realtime clock it really
    elapses, or longer if the real computation is)."""
    local_steps: int = 0
    """0: DEFT, the gradients of ``blocks`` on one batch. E >= 1: federated, E local optimizer
    steps over the whole adapter, uploading its change."""
    train_lora_a: bool = True
    """Federated only: False freezes the LoRA A matrices (FFA-LoRA)."""


@dataclass(frozen=True, slots=True)
class BlockUpload:
    """What a device sends back: the gradients of its blocks (or, federated, the change of its
    adapter) and how long everything took."""

    device: str
    round_idx: int
    blocks: tuple[int, ...]
    tensors: Mapping[str, np.ndarray]
    """Parameter name -> gradient (``kind == "gradients"``) or trained-minus-received weights
    (``kind == "delta"``)."""
    loss: float
    measured_compute_s: float
    """Real seconds of forward + backward on this host."""
    compute_s: float
    """Emulated compute seconds: the profile's prediction, or (realtime) the real time if longer."""
    upload_s: float
    """Emulated transmission seconds, payload_bits / rate."""
    payload_bits: float
    memory_need_bytes: float
    """The profile's memory need of the blocks, checked against the budget."""
    peak_memory_bytes: float
    """Measured: the CUDA allocator's peak during the step on a GPU, else the process's peak
    resident memory (shared backbone pages included)."""
    kind: str = "gradients"

    @property
    def latency_s(self) -> float:
        return self.compute_s + self.upload_s


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One line of ``metrics.jsonl``."""

    round: int
    emulated_time_s: float
    wall_s: float
    plan: Mapping[str, Any]
    planned_latency_s: float
    measured_latency_s: float
    devices: Mapping[str, Mapping[str, Any]]
    """Each device of the plan: its blocks, bandwidth, times and ``status`` (applied, failed, late)."""
    bottleneck_device: str
    loss: float
    evaluation: Mapping[str, float] | None = None
    events: tuple[Mapping[str, Any], ...] = ()
    """Failures, restarts, stragglers, re-plans, start-up notes."""
    blocks_applied: int = 0
    """Block gradients applied at the optimizer step (each block exactly once)."""
    recovery: tuple[Mapping[str, Any], ...] = ()
    """Re-plans within the round of blocks lost to failed or late devices: each with its plan and
    devices, as the first phase's."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["events"] = list(self.events)
        data["recovery"] = list(self.recovery)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RoundRecord":
        """The record of a ``metrics.jsonl`` line."""
        values = dict(data)
        values["events"] = tuple(values.get("events", ()))
        values["recovery"] = tuple(values.get("recovery", ()))
        return cls(**values)
