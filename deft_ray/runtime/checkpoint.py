"""Checkpoints: everything a run needs to continue exactly where it was, written atomically.

A checkpoint holds the adapter (LoRA and head), the optimizer's state, the round index, every
random generator's state (the coordinator's channel draws, each device's and the server's batch
streams), the emulated time, the devices still in the run and the ledger's length at that round.
It is one file, ``DIR/checkpoints/round-<r>.ckpt``: a header line with the format version and the
SHA-256 of the payload, then the payload saved with ``torch.save``. It is written to a temporary
file in the same folder, flushed to disk and renamed into place, so a crash while writing leaves
the previous checkpoint as it was; an existing checkpoint is never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from deft_ray.errors import DeftRayError
from deft_ray.runtime.records import Event, EventKind, RoundRecord

if TYPE_CHECKING:
    from deft_ray.runtime.coordinator import Coordinator

FORMAT = "deft-ray-checkpoint 1"
_NAME = re.compile(r"^round-(\d{6,})\.ckpt$")
#: Config fields that may differ between a checkpoint and the run resuming it.
RESUMABLE_CHANGES = ("rounds", "round_timeout_s", "storage_path", "reliability", "report_to")


class CheckpointError(DeftRayError):
    """A checkpoint cannot be used: unreadable, corrupt, or written by an incompatible run.

    Example scenario: a disk filled up while an older deft-ray wrote it, or ``config.yaml`` was edited.
    """


@dataclass(frozen=True)
class Checkpoint:
    """The state of a run after ``round_idx`` rounds."""

    round_idx: int
    adapter: Mapping[str, Any]
    """Trainable parameter name -> tensor (LoRA and head)."""
    optimizer: Mapping[str, Any]
    """``optimizer.state_dict()``."""
    coordinator_rng: Mapping[str, Any]
    """``numpy.random.Generator.bit_generator.state`` of the coordinator (fading draws)."""
    device_streams: Mapping[str, Mapping[str, Any]]
    """Device name -> its batch stream's ``state_dict()``."""
    server_stream: Mapping[str, Any] | None
    emulated_time_s: float
    live_devices: tuple[str, ...]
    """Devices still in the run (failed ones are gone)."""
    ledger_bytes: int
    """Length of ``metrics.jsonl`` after this round's line."""
    config: Mapping[str, Any]
    """The resolved config of the run that wrote it (as :func:`~deft_ray.config.to_dict`)."""
    schedule: Mapping[str, Any] | None = None
    """The learning-rate scheduler's ``state_dict()`` (``None`` in checkpoints written before it)."""
    edge: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """:meth:`~deft_ray.edge.dynamics.EdgeDynamics.state_dict`: shadowing, mobility, availability."""

    def _meta(self) -> dict[str, Any]:
        return {"round_idx": self.round_idx, "coordinator_rng": self.coordinator_rng,
                "device_streams": self.device_streams, "server_stream": self.server_stream,
                "emulated_time_s": self.emulated_time_s, "live_devices": list(self.live_devices),
                "ledger_bytes": self.ledger_bytes, "config": self.config, "edge": self.edge}


def checkpoint_path(folder: str | Path, round_idx: int) -> Path:
    return Path(folder) / f"round-{round_idx:06d}.ckpt"


def save_checkpoint(folder: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically as ``folder/round-<r>.ckpt`` and return its path.

    Raises:
        CheckpointError: a checkpoint of that round already exists (it is kept as is).
        OSError: the folder cannot be written (no temporary file is left).
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, checkpoint.round_idx)
    if path.exists():
        raise CheckpointError(f"checkpoint {path} already exists and is never overwritten; "
                              "move it aside if this run should replace it")
    buffer = io.BytesIO()
    torch.save({"adapter": dict(checkpoint.adapter), "optimizer": checkpoint.optimizer,
                "schedule": checkpoint.schedule, "meta": json.dumps(_plain(checkpoint._meta()))}, buffer)
    payload = buffer.getvalue()
    header = f"{FORMAT} sha256={hashlib.sha256(payload).hexdigest()}\n".encode()
    temporary = folder / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as file:
            file.write(header + payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint file.

    Raises:
        CheckpointError: the file is unreadable, from another format, or its payload does not
            match its digest (truncated or altered). The file is left untouched.
    """
    import torch

    path = Path(path)
    advice = "it is kept as is; move it out of the folder to resume from the checkpoint before it"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read ({error.strerror}); {advice}") from None
    header, _, payload = data.partition(b"\n")
    match = re.fullmatch(rf"{re.escape(FORMAT)} sha256=([0-9a-f]{{64}})", header.decode("ascii", "replace"))
    if not match:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT!r} file (header {header[:40]!r}); {advice}")
    if hashlib.sha256(payload).hexdigest() != match.group(1):
        raise CheckpointError(f"checkpoint {path} is corrupt: its content does not match its SHA-256 "
                              f"({len(payload)} payload bytes); {advice}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        meta = json.loads(state["meta"])
        return Checkpoint(adapter=state["adapter"], optimizer=state["optimizer"], schedule=state.get("schedule"),
                          live_devices=tuple(meta.pop("live_devices")), **meta)
    except Exception as error:  # noqa: BLE001 - any decoding failure means the same to the user
        raise CheckpointError(f"checkpoint {path} cannot be decoded ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:120]}); {advice}") from None


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint of the highest round in ``folder`` (``None`` if there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def check_compatible(checkpoint: Checkpoint, config: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint written under a different configuration (apart from
    :data:`RESUMABLE_CHANGES`), naming the first field that differs."""
    def differing(saved: Any, current: Any, where: str) -> str | None:
        if isinstance(saved, Mapping) and isinstance(current, Mapping):
            for key in sorted(set(saved) | set(current)):
                if not where and key in RESUMABLE_CHANGES:
                    continue
                found = differing(saved.get(key), current.get(key), f"{where}.{key}" if where else key)
                if found:
                    return found
            return None
        return None if _plain(saved) == _plain(current) else f"{where} ({saved!r} in the checkpoint, now {current!r})"

    found = differing(checkpoint.config, config, "")
    if found:
        raise CheckpointError(f"checkpoint {path} was written by a run with another config: {found}; "
                              "resume with the run's own config.yaml (only rounds, round_timeout_s, storage_path "
                              "and reliability may change)")


def _plain(value: Any) -> Any:
    """JSON-ready data: tuples as lists, numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_resumable(run_dir: Any, config: Any) -> tuple[Path, Checkpoint]:
    """The latest checkpoint of a run directory, verified and checked against ``config``.

    Raises:
        CheckpointError: there is none, or it is corrupt or from another configuration.
    """
    from deft_ray.config import to_dict

    path = latest_checkpoint(run_dir.checkpoints_dir)
    if path is None:
        raise CheckpointError(f"{run_dir.root} has no checkpoint in checkpoints/ (round-<r>.ckpt) to resume from; "
                              "start a new run, with reliability.checkpoint_every above 0")
    checkpoint = load_checkpoint(path)
    check_compatible(checkpoint, to_dict(config), path)
    return path, checkpoint


# ------------------------------------------------------------------------------ a run's state
def save_run_checkpoint(coordinator: Coordinator, round_idx: int, *, at_round_start: bool = False) -> Path | None:
    """Checkpoint the coordinator's run after ``round_idx`` rounds.

    ``at_round_start``: the current round failed; save the generator and devices as they were
    when it began, keeping an existing checkpoint of ``round_idx``. Returns the path (``None``
    when no round has completed).
    """
    from deft_ray.config import to_dict

    if round_idx < 1:
        return None
    run_dir = coordinator.run_dir
    path = checkpoint_path(run_dir.checkpoints_dir, round_idx)
    if at_round_start and path.exists():
        return path
    if at_round_start and coordinator.round_start_state is not None:
        rng_state, live, edge = coordinator.round_start_state
    else:
        rng_state, live = coordinator.rng.bit_generator.state, tuple(spec.name for spec in coordinator.specs)
        edge = coordinator.edge.state_dict()
    stream = coordinator.server_stream
    return save_checkpoint(run_dir.checkpoints_dir, Checkpoint(
        round_idx=round_idx, adapter=coordinator.model.trainable_state(), optimizer=coordinator.optimizer.state_dict(),
        schedule=coordinator.schedule.state_dict(),
        coordinator_rng=rng_state, device_streams=coordinator.pool.stream_states(),
        server_stream=stream.state_dict() if stream is not None else None,
        emulated_time_s=coordinator.emulated_time_s, live_devices=live,
        ledger_bytes=run_dir.metrics_path.stat().st_size, config=to_dict(coordinator.config), edge=edge))


def restore_run(coordinator: Coordinator, checkpoint: Checkpoint, path: Path) -> None:
    """Continue the coordinator's run from ``checkpoint``: adapter, optimizer, generators, devices,
    emulated time, and the ledger cut back to the checkpoint's round (later lines move to
    ``metrics.discarded.jsonl``)."""
    try:
        coordinator.model.load_trainable_state(checkpoint.adapter)
        coordinator.optimizer.load_state_dict(dict(checkpoint.optimizer))
        if checkpoint.schedule is not None:
            coordinator.schedule.load_state_dict(dict(checkpoint.schedule))
    except (DeftRayError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path} does not fit this model ({error}); resume with the "
                              "run's own config.yaml") from None
    coordinator.rng.bit_generator.state = dict(checkpoint.coordinator_rng)
    coordinator.edge.load_state_dict(checkpoint.edge)
    if checkpoint.server_stream is not None and coordinator.server_stream is not None:
        coordinator.server_stream.load_state_dict(dict(checkpoint.server_stream))
    for name in [spec.name for spec in coordinator.specs if spec.name not in checkpoint.live_devices]:
        if coordinator.config.reliability.on_device_failure == "restart":
            coordinator.pending_events.append(Event(kind=EventKind.DEVICE_RESTARTED, device=name, detail="on resume"))
        else:
            coordinator.remove_device(name)
    live = {spec.name for spec in coordinator.specs}
    coordinator.pool.load_stream_states({name: state for name, state in checkpoint.device_streams.items()
                                         if name in live})
    coordinator.emulated_time_s = float(checkpoint.emulated_time_s)
    coordinator.records = [RoundRecord.from_json(line) for line in coordinator.run_dir.cut_ledger(checkpoint.ledger_bytes)]
    if len(coordinator.records) != checkpoint.round_idx:
        raise CheckpointError(f"checkpoint {path} is of round {checkpoint.round_idx} but the ledger holds "
                              f"{len(coordinator.records)} rounds before it; the run directory was altered")
    coordinator.next_round = checkpoint.round_idx + 1
    coordinator.guard.first_loss = coordinator.records[0].loss if coordinator.records else None
    coordinator.pending_events.append(Event(kind=EventKind.RESUMED, checkpoint=str(path),
                                            after_round=checkpoint.round_idx, devices_left=len(coordinator.specs)))
