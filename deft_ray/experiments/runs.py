"""Reading finished or stopped run directories back: ``deft-ray show`` and ``deft-ray compare``
(no torch, no Ray).

A run is read from its files only (``config.yaml``, ``metrics.jsonl``, ``summary.json``,
``stop.json``, ``checkpoints/``, ``plots/``, ``adapter/``), so a run that stopped before writing
its summary is summarised from its ledger.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, load_config
from deft_ray.errors import DeftRayError, InputError
from deft_ray.runtime.ledger import RunDirectory, read_ledger
from deft_ray.runtime.records import RoundRecord
from deft_ray.experiments.terminal import output_console

#: Columns of the comparison table, in order; ``deft-ray compare`` writes them to ``comparison.csv``.
COLUMNS = ("run", "scheme", "devices", "rounds", "emulated_time_s", "mean_planned_latency_s",
           "mean_measured_latency_s", "metric", "best_metric", "energy_j", "events", "status")


@dataclass(frozen=True)
class RunView:
    """One run directory as read from disk."""

    directory: RunDirectory
    config: RunConfig
    records: list[RoundRecord]
    summary: Mapping[str, Any] | None
    """``summary.json``, or ``None`` when the run did not finish."""
    stop: Mapping[str, Any] | None
    """``stop.json``, or ``None`` when the run did not stop on an error."""

    @property
    def status(self) -> str:
        """``finished``, ``stopped in round R: reason``, or ``unfinished`` (interrupted, or still running)."""
        if self.stop is not None:
            return f"stopped in round {self.stop.get('round')}: {self.stop.get('reason')}"
        return "finished" if self.summary is not None else "unfinished"

    @property
    def metric(self) -> str | None:
        """The primary metric's name: the first key of the first evaluation."""
        return next((next(iter(r.evaluation)) for r in self.records if r.evaluation), None)

    def row(self) -> dict[str, Any]:
        """The run's row of the comparison table (see :data:`COLUMNS`), computed from its ledger."""
        records, metric = self.records, self.metric
        values = [r.evaluation[metric] for r in records if r.evaluation and metric in r.evaluation]
        return {
            "run": str(self.directory.root), "scheme": self.config.scheme, "devices": self.config.num_devices,
            "rounds": len(records), "emulated_time_s": records[-1].emulated_time_s if records else 0.0,
            "mean_planned_latency_s": float(np.mean([r.planned_latency_s for r in records])) if records else None,
            "mean_measured_latency_s": float(np.mean([r.measured_latency_s for r in records])) if records else None,
            "metric": metric, "best_metric": max(values) if values else None,
            "energy_j": (self.summary or {}).get("energy_j", self.ledger_energy_j),
            "events": sum(len(r.events) for r in records), "status": self.status}

    @property
    def ledger_energy_j(self) -> float | None:
        """The rounds' energy summed from the ledger (``None`` if a round lacks it, as an old ledger's do)."""
        energies = [r.energy_j for r in self.records]
        return float(sum(energies)) if energies and None not in energies else None

    def files(self) -> dict[str, Path]:
        """What the run left, by role, for the files that exist."""
        d = self.directory
        found = {"config": d.config_path, "profile": d.profile_path, "ledger": d.metrics_path,
                 "summary": d.summary_path, "stop": d.root / "stop.json", "adapter": d.adapter_dir,
                 "discarded ledger": d.root / "metrics.discarded.jsonl"}
        found = {role: path for role, path in found.items() if path.exists()}
        checkpoints = sorted(d.checkpoints_dir.glob("round-*.ckpt"), key=lambda p: int(p.stem.split("-")[1])) \
            if d.checkpoints_dir.is_dir() else []
        if checkpoints:
            found["latest checkpoint"] = checkpoints[-1]
        for plot in sorted(d.plots_dir.glob("*.png")) if d.plots_dir.is_dir() else []:
            found[f"plot {plot.stem}"] = plot
        return found


def load_run(path: str | Path, *, option: str = "RUN_DIR") -> RunView:
    """Read the run in ``path``.

    Raises:
        InputError: ``path`` is not a run directory, or its files cannot be read.
    """
    directory = RunDirectory(path)
    if not directory.config_path.is_file() or not directory.metrics_path.is_file():
        raise InputError(option, str(path), "is not a run directory (no config.yaml and metrics.jsonl)",
                         "give a folder `deft-ray run` wrote")
    try:
        config = load_config(directory.config_path)
        records = read_ledger(directory.metrics_path)
        summary = _read_json(directory.summary_path)
        stop = _read_json(directory.root / "stop.json")
    except (OSError, ValueError) as error:
        if isinstance(error, DeftRayError):
            raise
        raise InputError(option, str(path), f"cannot be read ({error})", "give an intact run directory") from None
    return RunView(directory=directory, config=config, records=records, summary=summary, stop=stop)


def print_run(run: RunView, console: Console | None = None) -> None:
    """``deft-ray show``: the run's status, its summary (``summary.json``, else computed from the
    ledger) and where its files are."""
    console = console or output_console()
    table = Table(title=f"{run.directory.root}: {run.status}", title_justify="left", show_header=False)
    summary = dict(run.summary) if run.summary is not None else _ledger_summary(run)
    for key, value in summary.items():
        table.add_row(key, _cell(value))
    console.print(table)
    files = Table(title="files", title_justify="left", show_header=False)
    for role, path in run.files().items():
        files.add_row(role, str(path))
    console.print(files)


def compare_runs(runs: Sequence[RunView], out_dir: str | Path, *, metric: str | None = None,
                 console: Console | None = None) -> list[Path]:
    """``deft-ray compare``: print one table of the runs and write ``comparison.csv``,
    ``latency.png`` (latency per round) and ``metric.png`` (metric against emulated time) to
    ``out_dir``; return the paths written.

    Raises:
        InputError: ``metric`` is given but no run reports it, or the runs share no metric.
    """
    from deft_ray.experiments.plots import write_comparison_plot, write_latency_comparison_plot

    if metric is not None and not any(r.evaluation and metric in r.evaluation for run in runs for r in run.records):
        raise InputError("--metric", metric, "no run reports it",
                         f"give one the runs report ({', '.join(sorted(_reported(runs))) or 'none was evaluated'})")
    metric = metric or _common_metric(runs)
    labels = _labels(runs)
    rows = [run.row() for run in runs]
    table = Table(title=f"{len(runs)} runs", title_justify="left")
    for column in ("run", "scheme", "devices", "rounds", "emulated s", "mean planned s", "mean measured s",
                   f"best {metric}", "energy J", "events", "status"):
        table.add_column(column, justify="left" if column in ("run", "scheme", "status") else "right")
    for label, run, row in zip(labels, runs, rows):
        best = _best(run, metric)
        table.add_row(label, row["scheme"], str(row["devices"]), str(row["rounds"]), _cell(row["emulated_time_s"]),
                      _cell(row["mean_planned_latency_s"]), _cell(row["mean_measured_latency_s"]), _cell(best),
                      _cell(row["energy_j"]), str(row["events"]), row["status"])
    (console or output_console()).print(table)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / "comparison.csv"
        with csv_path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            for run, row in zip(runs, rows):
                writer.writerow({**row, "metric": metric, "best_metric": _best(run, metric)})
    except OSError as error:
        raise InputError("--out", str(out), f"cannot be written ({error.strerror or error})",
                         "choose a folder you can write") from None
    by_label = {label: run.records for label, run in zip(labels, runs)}
    return [csv_path, write_latency_comparison_plot(by_label, out / "latency.png"),
            write_comparison_plot(by_label, out / "metric.png", metric=metric)]


def _best(run: RunView, metric: str) -> float | None:
    values = [r.evaluation[metric] for r in run.records if r.evaluation and metric in r.evaluation]
    return max(values) if values else None


def _common_metric(runs: Sequence[RunView]) -> str:
    """The first run's primary metric, which every evaluated run must report."""
    metrics = [run.metric for run in runs if run.metric is not None]
    if not metrics:
        return "accuracy"
    reported = [{key for r in run.records if r.evaluation for key in r.evaluation} for run in runs if run.metric]
    common = set.intersection(*reported)
    if metrics[0] in common:
        return metrics[0]
    raise InputError("RUN_DIR", [str(run.directory.root) for run in runs],
                     f"the runs report different metrics ({', '.join(sorted(set(metrics)))})",
                     f"compare runs of one task, or give --metric (shared: {', '.join(sorted(common)) or 'none'})")


def _reported(runs: Sequence[RunView]) -> set[str]:
    return {key for run in runs for r in run.records if r.evaluation for key in r.evaluation}


def _labels(runs: Sequence[RunView]) -> list[str]:
    """Each run's scheme, with its folder's name where two runs share a scheme."""
    schemes = [run.config.scheme for run in runs]
    return [scheme if schemes.count(scheme) == 1 else f"{scheme} ({run.directory.root.name})"
            for scheme, run in zip(schemes, runs)]


def _ledger_summary(run: RunView) -> dict[str, Any]:
    row = run.row()
    row.pop("status")
    row["final_loss"] = run.records[-1].loss if run.records else None
    return row


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} is not valid JSON ({error.msg})") from None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    return str(value)
