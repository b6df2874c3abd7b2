"""The run directory (DESIGN.md): resolved config, per-round ledger, summary, adapter, plots.

``metrics.jsonl`` gets one line per round, flushed as soon as the round ends, so a run that stops
early keeps every round it finished.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from deft_ray.config import RunConfig, dump_config
from deft_ray.planners import BlockCost
from deft_ray.records import RoundRecord


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
        from deft_ray.checkpoint import CheckpointError

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
            ledger.write(json.dumps(record.to_dict()) + "\n")

    def records(self) -> list[dict[str, Any]]:
        from deft_ray.plots import load_ledger

        return load_ledger(self.metrics_path)

    def write_profile(self, profile: Sequence[BlockCost], *, source: str) -> None:
        """The block profile the planner used, in the Instance JSON's block format."""
        data = {"source": source, "blocks": [dataclasses.asdict(block) for block in profile]}
        self.profile_path.write_text(json.dumps(data, indent=1) + "\n")

    def write_stop(self, round_idx: int, reason: str, events: Sequence[Mapping[str, Any]]) -> None:
        """``stop.json``: why the run stopped in ``round_idx`` and the events of that unfinished
        round (its failures), which no ledger line records."""
        data = {"round": round_idx, "reason": reason, "events": list(events)}
        (self.root / "stop.json").write_text(json.dumps(data, indent=1) + "\n")

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        (self.root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    def write_plots(self, metric: str) -> list[Path]:
        from deft_ray.plots import write_run_plots

        return write_run_plots(self.records(), self.plots_dir, metric=metric)
