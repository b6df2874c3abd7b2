"""``deft-ray run``: resolve the config, start (or join) Ray, drive the rounds with progress output.

The same function serves ``deft-ray run``, ``python -m deft_ray.runner`` and the job entrypoints:
a bare ``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` (as under ``ray job submit``) or
starts a local one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deft_ray.config import RunConfig, apply_overrides, load_config
from deft_ray.errors import InputError


def resize_population(config: RunConfig, num_devices: int) -> RunConfig:
    """The config's device mix scaled to ``num_devices`` devices (largest remainders)."""
    if num_devices < 1:
        raise InputError("--devices", num_devices, "must be at least 1", "give a positive number of devices")
    total = config.num_devices
    shares = [group.count * num_devices / total for group in config.devices]
    counts = [math.floor(share) for share in shares]
    for i in sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])[: num_devices - sum(counts)]:
        counts[i] += 1
    groups = tuple(dataclasses.replace(group, count=count) for group, count in zip(config.devices, counts) if count)
    return dataclasses.replace(config, devices=groups)


def resolve_config(path: str | None, overrides: Mapping[str, Any], *, num_devices: int | None = None) -> RunConfig:
    """Config file, then command-line overrides, then checks that need the model's shape."""
    config = apply_overrides(load_config(path), overrides)
    if num_devices is not None:
        config = resize_population(config, num_devices)
    check_against_model(config)
    return config


def check_against_model(config: RunConfig) -> None:
    """Fail before Ray starts when the model cannot be loaded or there are too few devices."""
    from transformers import AutoConfig

    from deft_ray.model import default_model_path
    from deft_ray.planners import get_scheme

    path = config.model.name_or_path or default_model_path()
    try:
        num_blocks = AutoConfig.from_pretrained(path).num_hidden_layers
    except (OSError, ValueError) as error:
        raise InputError("model.name_or_path", path, f"cannot be loaded ({str(error).splitlines()[0][:120]})",
                         "give a local model folder or a hub id reachable from here") from None
    if get_scheme(config.scheme).one_block_per_device and config.num_devices < num_blocks:
        raise InputError("devices", config.num_devices, f"scheme {config.scheme!r} gives each device at most one "
                         f"block and the model has {num_blocks} blocks",
                         f"use at least {num_blocks} devices or scheme 'single-device'")


def default_out_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.scheme}"


def run(config: RunConfig, *, out_dir: str | Path | None = None, use_ray: bool = True,
        console: Console | None = None) -> dict[str, Any]:
    """Run every round of ``config``; return the summary. The run directory is printed at the end."""
    from deft_ray.actors.launch import build_local, build_ray
    from deft_ray.ledger import RunDirectory

    console = console or Console()
    run_dir = RunDirectory(out_dir or default_out_dir(config))
    if use_ray:
        import ray

        if not ray.is_initialized():
            ray.init(log_to_driver=False)
    console.print(f"deft-ray: {config.num_devices} devices, scheme {config.scheme}, task {config.data.task}, "
                  f"{config.rounds} rounds, {config.clock} clock")
    coordinator = (build_ray if use_ray else build_local)(config, run_dir)
    columns = (TextColumn("[bold]round"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("rounds", total=config.rounds, status="")
        for record in coordinator.run():
            line = (f"round {record.round:4d}  planned {record.planned_latency_s:.3f} s  measured "
                    f"{record.measured_latency_s:.3f} s  bottleneck {record.bottleneck_device}  loss {record.loss:.4f}")
            if record.evaluation:
                line += "  " + "  ".join(f"{k} {v:.4f}" for k, v in record.evaluation.items())
            progress.console.print(line)
            progress.update(task, advance=1, status=f"loss {record.loss:.3f}")
    summary = coordinator.summary
    print_summary(summary, console)
    console.print(f"run directory: {run_dir.root.resolve()}")
    return summary


def print_summary(summary: Mapping[str, Any], console: Console) -> None:
    table = Table(title="run summary", title_justify="left", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k} {v:.4f}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)
