"""MLflow: the run in ``MLFLOW_TRACKING_URI``, else in a ``file:`` store ``mlruns/`` next to the run directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

from deft_ray.config import RunConfig
from deft_ray.reporting.base import Reporter, flat_config, round_values, summary_values
from deft_ray.runtime.records import RoundRecord, RunSummary

#: The experiment every run is logged under.
EXPERIMENT = "deft-ray"
#: Entries per ``log_batch`` call (MLflow accepts at most 100 parameters in one).
BATCH = 100


def default_tracking_uri(run_dir: Path) -> str:
    """``file:`` store beside the run directory, so the runs of one storage folder share it."""
    return (run_dir.resolve().parent / "mlruns").as_uri()


class MlflowReporter(Reporter):
    """Parameters: the resolved config; metrics: every round's values at its step, then the
    summary's; artifacts: ``plots/`` and ``adapter/``. The run is named after the run directory."""

    def __init__(self):
        self.client = None
        self.run_id: str | None = None

    def start(self, config: RunConfig, run_dir: Path) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = default_tracking_uri(run_dir)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt-in
        self.tracking_uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(EXPERIMENT)
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        params = [Param(key, str(value)) for key, value in flat_config(config).items()]
        for first in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[first:first + BATCH])

    def log_round(self, record: RoundRecord) -> None:
        self._log(round_values(record), step=record.round_idx)

    def finish(self, summary: RunSummary, run_dir: Path) -> None:
        self._log(summary_values(summary), step=summary.rounds)
        for folder in ("plots", "adapter"):
            if (run_dir / folder).is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / folder), artifact_path=folder)

    def close(self, *, completed: bool) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FINISHED" if completed else "KILLED")
            self.run_id = None

    def _log(self, values: dict[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        metrics = [Metric(key, value, now_ms, step) for key, value in values.items()]
        for first in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[first:first + BATCH])
