"""The run directory: resolved config, block profile, per-round ledger, summary, adapter, checkpoints, plots.

Its layout and the ledger's fields are described in docs/architecture.md, "Run directory".

``metrics.jsonl`` gets one line per round, flushed as soon as the round ends, so a run that stops
early keeps every round it finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from deft_ray.config import RunConfig, dump_config
from deft_ray.errors import DeftRayError, InputError
from deft_ray.planners import BlockCost
from deft_ray.runtime.records import Event, RoundRecord, RunSummary


class LedgerError(DeftRayError):
    """A round's ledger line cannot be written, so the run stops (the rounds before it are kept).

    Example scenario: the disk filled up, or the run directory was made read-only mid-run.
    """

    exit_code = 1


LOCK_NAME = ".lock"

UNSEEDED_FIELDS = frozenset({"wall_s", "measured_compute_s", "arrival_s", "peak_memory_bytes", "solve_time_s",
                             "planned_ahead"})
"""Ledger fields that do not follow from the run's seed: the host's timing, and whether a round's
plan was made ahead (a resumed run's first round has none made)."""


def seeded_fields(line: dict[str, Any]) -> dict[str, Any]:
    """A ledger line without its events and :data:`UNSEEDED_FIELDS`: what two runs of one config
    on the virtual clock share, however they were interrupted and resumed."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in UNSEEDED_FIELDS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip({k: v for k, v in line.items() if k != "events"})


class RunDirectory:
    """``DIR/config.yaml``, ``DIR/profile.json``, ``DIR/metrics.jsonl``, ``DIR/summary.json``,
    ``DIR/adapter/``, ``DIR/checkpoints/`` and ``DIR/plots/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def adapter_dir(self) -> Path:
        return self.root / "adapter"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def profile_path(self) -> Path:
        return self.root / "profile.json"

    def holds_run(self) -> bool:
        """Whether a run has written here (its config, ledger or checkpoints)."""
        return (self.config_path.exists() or self.metrics_path.exists()
                or (self.checkpoints_dir.is_dir() and any(self.checkpoints_dir.iterdir())))

    @contextlib.contextmanager
    def locked(self, option: str = "--out") -> Iterator[None]:
        """Hold the directory for one run: a second run on it is refused while this one lives. The
        lock is the kernel's (``flock``), so a run that crashed holds nothing, whatever file it left.

        Raises:
            InputError: the folder cannot be made or written, or another run holds it.
        """
        import fcntl

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK_NAME, "a+")
        except OSError as error:
            raise _unwritable(option, self.root, error) from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise InputError(option, str(self.root), f"is in use by another deft-ray run (pid {holder})",
                                 "wait for it to end, or choose another folder") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            self._check_writable(option)
            yield
        finally:
            with contextlib.suppress(OSError):
                (self.root / LOCK_NAME).unlink()
            handle.close()

    def _check_writable(self, option: str) -> None:
        """Write and remove a probe file, so an unwritable or full folder fails now, not mid-run."""
        probe = self.root / f".write-probe-{os.getpid()}.tmp"
        try:
            with open(probe, "wb") as file:
                file.write(b"\0" * 4096)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            raise _unwritable(option, self.root, error) from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def claim(self, *, overwrite: bool) -> None:
        """Make sure a new run may write here: a folder holding a run is refused, unless
        ``overwrite`` asks to replace it (its files are then removed)."""
        import shutil

        if self.root.exists() and not self.root.is_dir():
            raise InputError("--out", str(self.root), "is a file, not a folder", "give a folder for the run")
        if self.holds_run():
            if not overwrite:
                raise InputError("--out", str(self.root), "holds a run already",
                                 f"resume it with `deft-ray run --resume {self.root}`, choose another --out, "
                                 "or add --overwrite to replace it")
            for name in ("config.yaml", "profile.json", "metrics.jsonl", "metrics.discarded.jsonl", "summary.json",
                         "stop.json"):
                (self.root / name).unlink(missing_ok=True)
            for folder in (self.checkpoints_dir, self.adapter_dir, self.plots_dir):
                shutil.rmtree(folder, ignore_errors=True)

    def create(self, config: RunConfig, *, resume: bool = False) -> None:
        """Make the folders, write the resolved config and start an empty ledger. ``resume``
        changes nothing here: the ledger is trimmed (:meth:`cut_ledger`) and the config rewritten
        (:meth:`write_config`) once the checkpoint is restored."""
        for folder in (self.root, self.checkpoints_dir, self.plots_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.write_config(config)
            self.metrics_path.write_text("")

    def write_config(self, config: RunConfig) -> None:
        dump_config(config, self.config_path)

    def cut_ledger(self, length_bytes: int) -> list[dict[str, Any]]:
        """Keep the first ``length_bytes`` of ``metrics.jsonl`` (the rounds up to a checkpoint) and
        return their records; lines after it are appended to ``metrics.discarded.jsonl``, not lost."""
        from deft_ray.runtime.checkpoint import CheckpointError

        data = self.metrics_path.read_bytes() if self.metrics_path.is_file() else b""
        if len(data) < length_bytes:
            raise CheckpointError(f"{self.metrics_path} holds {len(data)} bytes but the checkpoint was taken at "
                                  f"{length_bytes}; the ledger was truncated or replaced")
        if len(data) > length_bytes:
            with (self.root / "metrics.discarded.jsonl").open("ab") as discarded:
                discarded.write(data[length_bytes:])
            with self.metrics_path.open("r+b") as ledger:
                ledger.truncate(length_bytes)
        return [json.loads(line) for line in data[:length_bytes].decode().splitlines() if line.strip()]

    def append(self, record: RoundRecord) -> None:
        """Append the round's line, whole or not at all.

        Raises:
            LedgerError: the line cannot be written; the message names the last good checkpoint.
        """
        line = (json.dumps(record.to_json()) + "\n").encode()
        try:
            size = self.metrics_path.stat().st_size
            with self.metrics_path.open("ab") as ledger:
                try:
                    ledger.write(line)
                    ledger.flush()
                except OSError:
                    ledger.truncate(size)  # no half line
                    raise
        except OSError as error:
            from deft_ray.runtime.checkpoint import latest_checkpoint

            last = latest_checkpoint(self.checkpoints_dir)
            kept = (f"the last good checkpoint is {last}; resume with `deft-ray run --resume {self.root}` once "
                    "the folder can be written" if last else "there is no checkpoint to resume from")
            raise LedgerError(f"round {record.round_idx}: {self.metrics_path} cannot be written "
                              f"({error.strerror or error}); the run stopped; {kept}") from None

    def records(self) -> list[RoundRecord]:
        """The ledger's rounds; a line cut off by a crash at the end is skipped."""
        return read_ledger(self.metrics_path)

    def write_profile(self, profile: Sequence[BlockCost], *, source: str) -> None:
        """The block profile the planner used, in the Instance JSON's block format."""
        data = {"source": source, "blocks": [dataclasses.asdict(block) for block in profile]}
        self.profile_path.write_text(json.dumps(data, indent=1) + "\n")

    def write_stop(self, round_idx: int, reason: str, events: Sequence[Event]) -> None:
        """``stop.json``: why the run stopped in ``round_idx`` and the events of that unfinished
        round (its failures), which no ledger line records."""
        data = {"round": round_idx, "reason": reason, "events": [event.to_json() for event in events]}
        (self.root / "stop.json").write_text(json.dumps(data, indent=1) + "\n")

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def write_summary(self, summary: RunSummary) -> None:
        self.summary_path.write_text(json.dumps(summary.to_json(), indent=1) + "\n")

    def write_plots(self, metric: str) -> list[Path]:
        from deft_ray.experiments.plots import write_run_plots

        return write_run_plots(self.records(), self.plots_dir, metric=metric)


def read_ledger(path: str | Path) -> list[RoundRecord]:
    """The round records of a ``metrics.jsonl``, in file order. A last line without its newline
    that does not parse (a crash while writing it) is skipped.

    Raises:
        ValueError: a line is not a round record; the message names the file and the 1-based line.
    """
    text = Path(path).read_text()
    lines = text.splitlines()
    records = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            if line_number == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(f"{path}: line {line_number} is not valid JSON ({error.msg}); "
                             "the ledger holds one JSON object per line") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path}: line {line_number} holds a {type(data).__name__}, "
                             "not a JSON object; the ledger holds one round record per line")
        try:
            records.append(RoundRecord.from_json(data))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: line {line_number} is not a round record ({type(error).__name__}: "
                             f"{error})") from error
    return records


def _unwritable(option: str, root: Path, error: OSError) -> InputError:
    fix = ("free some space or choose a folder on another disk" if error.errno == errno.ENOSPC
           else "choose a folder you can write")
    return InputError(option, str(root), f"cannot be written ({error.strerror or error})", fix)
