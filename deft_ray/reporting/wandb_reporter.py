"""Weights & Biases: a run in project ``deft-ray`` whose files go to ``DIR/wandb/``; ``WANDB_MODE=offline``
keeps it there (``wandb sync`` uploads it later)."""

from __future__ import annotations

from pathlib import Path

from deft_ray.config import RunConfig, to_dict
from deft_ray.reporting.base import Reporter, round_values, summary_values
from deft_ray.runtime.records import RoundRecord, RunSummary

#: The project every run is logged to (``WANDB_PROJECT`` overrides it).
PROJECT = "deft-ray"


class WandbReporter(Reporter):
    """Config: the resolved config; history: every round's values at its step; summary: the
    run's summary; the plots as images (``plots/<name>``); the adapter as a ``model`` artifact."""

    def __init__(self):
        self.run = None

    def start(self, config: RunConfig, run_dir: Path) -> None:
        import os

        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_dir.name,
                              dir=str(run_dir), config=to_dict(config), reinit="create_new")

    def log_round(self, record: RoundRecord) -> None:
        self.run.log(round_values(record), step=record.round_idx)

    def finish(self, summary: RunSummary, run_dir: Path) -> None:
        import wandb

        images = {f"plots/{plot.stem}": wandb.Image(str(plot)) for plot in sorted((run_dir / "plots").glob("*.png"))}
        self.run.log(images, step=summary.rounds)
        for key, value in summary_values(summary).items():
            self.run.summary[key] = value
        if (run_dir / "adapter").is_dir():
            artifact = wandb.Artifact(f"adapter-{self.run.id}", type="model")
            artifact.add_dir(str(run_dir / "adapter"))
            self.run.log_artifact(artifact)

    def close(self, *, completed: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if completed else 1)
            self.run = None
