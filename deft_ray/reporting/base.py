"""The :class:`Reporter` interface, the values every reporter logs, and building the reporters of a config."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping, Sequence

from deft_ray.config import RunConfig, to_dict
from deft_ray.errors import InputError
from deft_ray.runtime.records import RoundRecord, RunSummary

#: ``report_to`` name -> (module:class of its reporter, the Python package it needs, the extra that installs it).
REPORTERS = {
    "tensorboard": ("deft_ray.reporting.tensorboard_reporter:TensorBoardReporter", "tensorboard", "tensorboard"),
    "mlflow": ("deft_ray.reporting.mlflow_reporter:MlflowReporter", "mlflow", "mlflow"),
    "wandb": ("deft_ray.reporting.wandb_reporter:WandbReporter", "wandb", "wandb"),
}


class Reporter(ABC):
    """One place a run is logged to. The driver calls :meth:`start`, :meth:`log_round` per
    round, :meth:`finish` once the run's files are written, and :meth:`close` always."""

    @abstractmethod
    def start(self, config: RunConfig, run_dir: Path) -> None:
        """Open the run there and log the resolved config as its parameters."""

    @abstractmethod
    def log_round(self, record: RoundRecord) -> None:
        """Log :func:`round_values` of ``record`` at step ``record.round_idx``."""

    @abstractmethod
    def finish(self, summary: RunSummary, run_dir: Path) -> None:
        """Log the summary and the run's plots and adapter as artifacts."""

    def close(self, *, completed: bool) -> None:
        """End the run there (``completed`` is false for a run that stopped or failed)."""


def make_reporters(names: Sequence[str]) -> list[Reporter]:
    """The reporters of ``report_to``, each checked to have its library installed.

    Raises:
        InputError: a reporter's optional extra is not installed; the message says what to install.
    """
    reporters = []
    for name in names:
        target, package, extra = REPORTERS[name]
        try:
            importlib.import_module(package)
        except ImportError:
            raise InputError("report_to", name, f"needs the {package} package, which is not installed",
                             f"pip install 'deft-ray[{extra}]'") from None
        module, cls = target.split(":")
        reporters.append(getattr(importlib.import_module(module), cls)())
    return reporters


def flat_config(config: RunConfig) -> dict[str, str | float | int | bool]:
    """The resolved config as dotted keys (``data.batch_size``); lists and empty values as text."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, f"{prefix}{key}.")
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix[:-1]] = value
        else:
            flat[prefix[:-1]] = str(value)

    walk(to_dict(config), "")
    return flat


def round_values(record: RoundRecord) -> dict[str, float]:
    """What a round logs: planned and measured latency, loss, emulated time, blocks applied,
    events, evaluation metrics (``eval/<metric>``), energy where the record has it, and each
    device's compute and upload seconds (``device/<name>/compute_s``, ``.../upload_s``)."""
    values = {"planned_latency_s": record.planned_latency_s, "measured_latency_s": record.measured_latency_s,
              "loss": record.loss, "emulated_time_s": record.emulated_time_s,
              "blocks_applied": float(record.blocks_applied), "events": float(len(record.events))}
    energy_j = getattr(record, "energy_j", None)
    if energy_j is not None:
        values["energy_j"] = float(energy_j)
    for name, value in (record.evaluation or {}).items():
        values[f"eval/{name}"] = float(value)
    for name, device in record.devices.items():
        if device.compute_s is not None:
            values[f"device/{name}/compute_s"] = device.compute_s
        if device.upload_s is not None:
            values[f"device/{name}/upload_s"] = device.upload_s
    return values


def summary_values(summary: RunSummary) -> dict[str, float]:
    """The summary's numbers (``summary/<key>``)."""
    return {f"summary/{key}": float(value) for key, value in summary.to_json().items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
