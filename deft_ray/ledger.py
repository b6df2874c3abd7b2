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

    def create(self, config: RunConfig) -> None:
        """Make the folders, write the resolved config and start an empty ledger."""
        for folder in (self.root, self.checkpoints_dir, self.plots_dir):
            folder.mkdir(parents=True, exist_ok=True)
        dump_config(config, self.root / "config.yaml")
        self.metrics_path.write_text("")

    def append(self, record: RoundRecord) -> None:
        with self.metrics_path.open("a") as ledger:
            ledger.write(json.dumps(record.to_dict()) + "\n")

    def records(self) -> list[dict[str, Any]]:
        from deft_ray.plots import load_ledger

        return load_ledger(self.metrics_path)

    def write_profile(self, profile: Sequence[BlockCost], *, source: str) -> None:
        """The block profile the planner used, in the Instance JSON's block format."""
        data = {"source": source, "blocks": [dataclasses.asdict(block) for block in profile]}
        (self.root / "profile.json").write_text(json.dumps(data, indent=1) + "\n")

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        (self.root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    def write_plots(self, metric: str) -> list[Path]:
        from deft_ray.plots import write_run_plots

        return write_run_plots(self.records(), self.plots_dir, metric=metric)
