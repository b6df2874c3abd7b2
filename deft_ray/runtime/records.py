"""Frozen records that cross every boundary of a run: work orders, uploads, events, rounds, summaries.

JSON appears only where the ledger is written and read (:meth:`RoundRecord.to_json` and
:meth:`RoundRecord.from_json`); everything else passes these records. The ledger's fields are
described in docs/architecture.md, "Run directory".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from deft_ray.planners import Plan


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """A device's job for one round (1-based ``round_idx``)."""

    round_idx: int
    blocks: tuple[int, ...]
    bandwidth_hz: float
    rate_bps: float
    """Uplink rate at that bandwidth this round (channel and fading included)."""
    planned_compute_s: float
    """Profile prediction ``compute_scale * compute_s`` of the lowest block (times the local
    steps of a local update): the emulated compute time (under the realtime clock it really
    elapses, or longer if the real computation is)."""
    profile_compute_s: float | None = None
    """The profile's ``compute_s`` of the lowest block itself (times the local steps), without
    the device's ``compute_scale``: what the work costs the host that runs it, since every
    emulated device computes at the host's speed (``None``: not known)."""


@dataclass(frozen=True, slots=True)
class BlockGradientsOrder(WorkOrder):
    """DEFT: the gradients of ``blocks`` on one batch."""


@dataclass(frozen=True, slots=True)
class LocalUpdateOrder(WorkOrder):
    """Federated: ``local_steps`` optimizer steps over the whole adapter, uploading its change."""

    local_steps: int = 1
    train_lora_a: bool = True
    """False freezes the LoRA A matrices (FFA-LoRA)."""


@dataclass(frozen=True, slots=True)
class BlockUpload:
    """What a device sends back: the gradients of its blocks (or, for a local update, the change of
    its adapter) and how long everything took."""

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
    num_examples: int = 0
    """The device's training examples (its partition's size): FedAvg's weight of its update."""
    energy_j: float = 0.0
    """compute_power_w x compute_s + tx_power_w x upload_s."""
    dtype: str = "float32"
    """How the tensors travelled (``network.upload_dtype``); int8 tensors come with ``scales``."""
    scales: Mapping[str, float] = field(default_factory=dict)
    """int8 uploads: each tensor's scale (value = int8 x scale)."""
    next_padded_length: int | None = None
    """Tokens per example of the batch the device trains on next (``None``: unknown): the device
    pool sends the dearest work first by it (:mod:`deft_ray.actors.dispatch_order`)."""

    @property
    def latency_s(self) -> float:
        return self.compute_s + self.upload_s


class EventKind(str, enum.Enum):
    """What can happen in a run besides the plan being carried out."""

    PROFILE_MEASURED = "profile_measured"
    PROFILE_LOADED = "profile_loaded"
    PROFILE_SMOOTHED = "profile_smoothed"
    DEVICES_PLACED = "devices_placed"
    DEVICE_FAILED = "device_failed"
    DEVICE_RESTARTED = "device_restarted"
    RESTART_FAILED = "restart_failed"
    DEVICE_REMOVED = "device_removed"
    STRAGGLER = "straggler"
    REPLANNED = "replanned"
    TARGET_REACHED = "target_reached"
    RESUMED = "resumed"
    CHECKPOINT_FAILED = "checkpoint_failed"
    PLANNER_WARNING = "planner_warning"
    WAITED = "waited_for_devices"
    """The devices online could not cover the blocks, so the round waited for more to come online."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing that happened in a round. Fields that do not apply to the kind stay ``None``
    and are left out of the ledger line."""

    kind: EventKind
    device: str | None = None
    blocks: tuple[int, ...] | None = None
    detail: str | None = None
    error: str | None = None
    """Failures: the exception's type and message, or how the process died."""
    latency_s: float | None = None
    """Stragglers: the upload's emulated latency (``None`` when it never arrived)."""
    deadline_s: float | None = None
    planned_latency_s: float | None = None
    assignment: Mapping[str, tuple[int, ...]] | None = None
    """Re-plans: device -> blocks."""
    devices_left: int | None = None
    metric: str | None = None
    value: float | None = None
    target: float | None = None
    checkpoint: str | None = None
    after_round: int | None = None
    nodes: Mapping[str, str | None] | None = None
    startup_s: float | None = None
    waited_s: float | None = None
    """Waits for devices to come online: the emulated seconds waited."""
    startup_stages_s: Mapping[str, float] | None = None
    """Devices placed: one device's mean share of its process's start-up, CPU and wall seconds per
    stage (``imports_cpu_s``, ``model_wall_s``, ..., ``cpu_s``; deft_ray/actors/startup.py)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value}
        for item in fields(self)[1:]:
            value = getattr(self, item.name)
            if value is None and not (self.kind is EventKind.STRAGGLER and item.name == "latency_s"):
                continue
            if item.name == "blocks":
                value = list(value)
            elif item.name == "assignment":
                value = {name: list(blocks) for name, blocks in value.items()}
            elif item.name in ("nodes", "startup_stages_s"):
                value = dict(value)
            data[item.name] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        values = dict(data)
        values["kind"] = EventKind(values["kind"])
        if values.get("blocks") is not None:
            values["blocks"] = tuple(values["blocks"])
        if values.get("assignment") is not None:
            values["assignment"] = {name: tuple(blocks) for name, blocks in values["assignment"].items()}
        return cls(**values)


class DeviceStatus(str, enum.Enum):
    APPLIED = "applied"
    """Its upload arrived in time and was applied."""
    LATE = "late"
    """Past the straggler deadline: its blocks were recomputed elsewhere."""
    FAILED = "failed"
    """Its process died or it raised."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRound:
    """One device's part in one phase of a round. Times are ``None`` when no upload came."""

    blocks: tuple[int, ...]
    bandwidth_hz: float
    status: DeviceStatus
    compute_s: float | None = None
    upload_s: float | None = None
    measured_compute_s: float | None = None
    arrival_s: float | None = None
    """Emulated seconds from dispatch to the upload's arrival (realtime clock: wall / time_scale)."""
    memory_need_bytes: float | None = None
    peak_memory_bytes: float | None = None
    loss: float | None = None
    error: str | None = None
    energy_j: float | None = None
    """compute_power_w x compute_s + tx_power_w x upload_s."""

    @classmethod
    def of_upload(cls, upload: BlockUpload, order: WorkOrder, *, arrival_s: float, late: bool) -> DeviceRound:
        return cls(blocks=upload.blocks, bandwidth_hz=order.bandwidth_hz,
                   status=DeviceStatus.LATE if late else DeviceStatus.APPLIED, compute_s=upload.compute_s,
                   upload_s=upload.upload_s, measured_compute_s=upload.measured_compute_s, arrival_s=arrival_s,
                   memory_need_bytes=upload.memory_need_bytes, peak_memory_bytes=upload.peak_memory_bytes,
                   loss=upload.loss, energy_j=upload.energy_j)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            data[item.name] = (list(value) if item.name == "blocks"
                               else value.value if item.name == "status" else value)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceRound:
        return cls(**{**data, "blocks": tuple(data["blocks"]), "status": DeviceStatus(data["status"])})


@dataclass(frozen=True, slots=True)
class Phase:
    """One dispatch of a round: its plan and what each device made of it. A round has one phase,
    plus one for each re-plan of blocks lost to failed or late devices."""

    plan: Plan
    devices: Mapping[str, DeviceRound]

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "devices": {name: d.to_json() for name, d in self.devices.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Phase:
        return cls(plan=Plan.from_dict(data["plan"]),
                   devices={name: DeviceRound.from_json(d) for name, d in data["devices"].items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    """One round of a run: one line of ``metrics.jsonl``."""

    round_idx: int
    """1-based; the ledger's ``round``."""
    emulated_time_s: float
    """Emulated seconds since the run began, at this round's end."""
    wall_s: float
    plan: Plan
    planned_latency_s: float
    measured_latency_s: float
    devices: Mapping[str, DeviceRound]
    """Each device of the first phase's plan."""
    bottleneck_device: str | None
    loss: float
    evaluation: Mapping[str, float] | None = None
    events: tuple[Event, ...] = ()
    blocks_applied: int = 0
    """Block gradients applied at the optimizer step (each block exactly once)."""
    recovery: tuple[Phase, ...] = ()
    """Re-plans within the round of blocks lost to failed or late devices."""
    online: tuple[str, ...] | None = None
    """The devices online (and in the run) when the round was planned."""
    waited_s: float = 0.0
    """Emulated seconds the round waited, before planning, for enough devices to come online."""
    energy_j: float | None = None
    """Energy every upload of the round cost its device (every phase, late uploads included);
    ``None`` in a ledger written before energy was accounted."""
    planned_ahead: bool = False
    """Whether the round's plan was solved while the round before it computed (virtual clock,
    ``runtime.plan_ahead``; docs/architecture.md, "Planning ahead")."""

    @property
    def primary_metric(self) -> float | None:
        """The evaluation's first metric (accuracy, F1 for mrpc, Pearson for stsb), if evaluated."""
        return next(iter(self.evaluation.values())) if self.evaluation else None

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round_idx, "emulated_time_s": self.emulated_time_s, "wall_s": self.wall_s,
            "plan": self.plan.to_dict(), "planned_latency_s": self.planned_latency_s,
            "measured_latency_s": self.measured_latency_s,
            "devices": {name: device.to_json() for name, device in self.devices.items()},
            "bottleneck_device": self.bottleneck_device, "loss": self.loss,
            "evaluation": dict(self.evaluation) if self.evaluation is not None else None,
            "events": [event.to_json() for event in self.events], "blocks_applied": self.blocks_applied,
            "recovery": [phase.to_json() for phase in self.recovery],
            "online": list(self.online) if self.online is not None else None, "waited_s": self.waited_s,
            "energy_j": self.energy_j, "planned_ahead": self.planned_ahead,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundRecord:
        """The record of a ``metrics.jsonl`` line."""
        return cls(
            round_idx=int(data["round"]), emulated_time_s=float(data["emulated_time_s"]), wall_s=float(data["wall_s"]),
            plan=Plan.from_dict(data["plan"]), planned_latency_s=float(data["planned_latency_s"]),
            measured_latency_s=float(data["measured_latency_s"]),
            devices={name: DeviceRound.from_json(d) for name, d in data["devices"].items()},
            bottleneck_device=data.get("bottleneck_device"), loss=float(data["loss"]),
            evaluation=data.get("evaluation"), events=tuple(Event.from_json(e) for e in data.get("events", ())),
            blocks_applied=int(data.get("blocks_applied", 0)),
            recovery=tuple(Phase.from_json(p) for p in data.get("recovery", ())),
            online=tuple(data["online"]) if data.get("online") is not None else None,
            waited_s=float(data.get("waited_s", 0.0)),
            energy_j=None if data.get("energy_j") is None else float(data["energy_j"]),
            planned_ahead=bool(data.get("planned_ahead", False)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceMemory:
    """The device processes' resident memory at the end of a run (Ray pools only)."""

    mean_uss_bytes: float
    mean_rss_bytes: float
    total_uss_bytes: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """What ran, how long it took in emulated and wall time, and where it ended (``summary.json``)."""

    scheme: str
    task: str
    devices: int
    rounds: int
    clock: str
    emulated_time_s: float
    wall_s: float
    mean_planned_latency_s: float | None
    mean_measured_latency_s: float | None
    final_loss: float | None
    final_evaluation: Mapping[str, float] | None
    metric: str
    """The primary metric's name."""
    best_metric: float | None
    events: int
    device_memory: DeviceMemory | None = None
    energy_j: float = 0.0
    """Energy of every round, summed."""
    device_energy_j: Mapping[str, float] = field(default_factory=dict)
    """Each device's energy over the run."""
    trailing_events: tuple[Event, ...] = ()
    """Events after the last round's ledger line was written (a failed last checkpoint)."""

    def to_json(self) -> dict[str, Any]:
        data = {item.name: getattr(self, item.name) for item in fields(self)
                if item.name not in ("metric", "best_metric", "device_memory", "trailing_events", "energy_j",
                                     "device_energy_j")}
        data["final_evaluation"] = dict(self.final_evaluation) if self.final_evaluation else None
        keys = list(data)
        ordered = {k: data[k] for k in keys[:keys.index("final_evaluation") + 1]}
        ordered[f"best_{self.metric}"] = self.best_metric
        ordered["energy_j"] = self.energy_j
        ordered["device_energy_j"] = dict(self.device_energy_j)
        ordered["events"] = self.events
        if self.device_memory is not None:
            ordered["device_memory"] = {item.name: getattr(self.device_memory, item.name)
                                        for item in fields(self.device_memory)}
        if self.trailing_events:
            ordered["trailing_events"] = [event.to_json() for event in self.trailing_events]
        return ordered


@dataclass(frozen=True, slots=True)
class RunStarted:
    """First item of a run's stream: the last round already done (0, or a resumed run's checkpoint)."""

    rounds_done: int


@dataclass(frozen=True, slots=True)
class RunWarning:
    """Something the driver should print at once, the run going on (a checkpoint not written)."""

    message: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    """Last item of a finished run's stream."""

    summary: RunSummary


@dataclass(frozen=True, slots=True)
class RunInterrupted:
    """Last item of a run stopped on request (SIGINT or SIGTERM) after ``rounds_done`` rounds."""

    rounds_done: int
    checkpoint: str | None
    """The checkpoint of the last completed round (``None`` when no round completed)."""


@dataclass(frozen=True, slots=True)
class DevicesStarting:
    """Before :class:`RunStarted`: how many of the run's devices have built their models."""

    ready: int
    total: int


RunStreamItem = DevicesStarting | RunStarted | RoundRecord | RunWarning | RunFinished | RunInterrupted
"""What a run streams to its driver, in order: the devices starting, one start, a record per round
(warnings between), then a finish or an interruption."""


__all__ = ["BlockGradientsOrder", "BlockUpload", "DeviceMemory", "DevicesStarting", "DeviceRound", "DeviceStatus", "Event",
           "EventKind", "LocalUpdateOrder", "Phase", "RoundRecord", "RunFinished", "RunInterrupted", "RunStarted",
           "RunStreamItem", "RunSummary", "RunWarning", "WorkOrder"]
