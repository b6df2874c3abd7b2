"""The run directory: resolved config, block profile, per-round ledger, summary, adapter, checkpoints, plots.

Its layout and the ledger's fields are described in docs/architecture.md, "Run directory".

``metrics.jsonl`` gets one line per round, flushed as soon as the round ends, so a run that stops
early keeps every round it finished.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from deft_ray.config import RunConfig, dump_config
from deft_ray.planners import BlockCost
from deft_ray.runtime.records import Event, RoundRecord, RunSummary


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

    def claim(self, *, overwrite: bool) -> None:
        """Make sure a new run may write here: a folder holding a run is refused, unless
        ``overwrite`` asks to replace it (its files are then removed)."""
        import shutil

        from deft_ray.errors import InputError

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
        """Make the folders, write the resolved config and start an empty ledger (``resume``: keep
        the ledger, which :meth:`cut_ledger` trims to the checkpoint)."""
        for folder in (self.root, self.checkpoints_dir, self.plots_dir):
            folder.mkdir(parents=True, exist_ok=True)
        dump_config(config, self.config_path)
        if not resume:
            self.metrics_path.write_text("")

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
        with self.metrics_path.open("a") as ledger:
            ledger.write(json.dumps(record.to_json()) + "\n")

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
