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
from typing import Any, Iterator, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deft_ray.actors.coordinator import RoundError
from deft_ray.config import RunConfig, apply_overrides, load_config
from deft_ray.errors import InputError
from deft_ray.records import RoundRecord


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
                         f"use at least {num_blocks} devices or scheme 'multiblock'")
    check_memory_budgets(config)


def check_memory_budgets(config: RunConfig) -> None:
    """Fail before Ray starts when no device can hold the input-side block (it needs the most
    memory), or, with a profile file, when the scheme finds no plan for the first round.

    Raises:
        InputError: every device group's memory_fraction is below 1 (no absolute budget given).
        InfeasibleError: with a profile, the budgets admit no plan of the scheme; it names the block.
    """
    from deft_ray.planners import solve

    relative = [group for group in config.devices if group.memory_bytes is None]
    if len(relative) == len(config.devices) and max(group.memory_fraction for group in relative) < 1:
        largest = max(range(len(config.devices)), key=lambda i: config.devices[i].memory_fraction)
        raise InputError(f"devices[{largest}].memory_fraction", config.devices[largest].memory_fraction,
                         "is the largest and below 1, so no device can hold block 0 (the input-side layer "
                         "needs the most memory)", "give at least one device group memory_fraction >= 1")
    if config.profile:
        import numpy as np

        from deft_ray.actors.coordinator import round_instance
        from deft_ray.actors.launch import device_specs
        from deft_ray.costs import load_profile

        profile = load_profile(config.profile)
        instance = round_instance(config, device_specs(config, profile), profile, np.random.default_rng(config.seed))
        solve(instance, config.scheme, seed=config.seed)


def resolve_resume(run_dir: str | Path, overrides: Mapping[str, Any]) -> RunConfig:
    """The config of the run in ``run_dir`` (its ``config.yaml``) with the overrides a resumed run
    may change, after checking that its latest checkpoint is readable and fits that config.

    Raises:
        InputError: ``run_dir`` is not a run directory, or an override cannot change on resume.
        CheckpointError: no usable checkpoint (it is left as it is).
    """
    from deft_ray.checkpoint import RESUMABLE_CHANGES, load_resumable
    from deft_ray.ledger import RunDirectory

    fixed = sorted(key for key, value in overrides.items()
                   if value is not None and key.split(".")[0] not in RESUMABLE_CHANGES)
    if fixed:
        raise InputError(f"--{fixed[0].split('.')[-1].replace('_', '-')}", overrides[fixed[0]],
                         "cannot change when resuming (the checkpoint was trained under the run's config)",
                         f"drop it; only {', '.join(RESUMABLE_CHANGES)} may change")
    directory = RunDirectory(run_dir)
    if not directory.config_path.is_file() or not directory.profile_path.is_file():
        raise InputError("--resume", str(run_dir), "is not a run directory (no config.yaml and profile.json)",
                         "give the folder a `deft-ray run` wrote")
    config = apply_overrides(load_config(directory.config_path), overrides)
    check_against_model(config)
    load_resumable(directory, config)
    return config


def default_out_dir(config: RunConfig) -> Path:
    return Path(config.storage_path).expanduser() / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.scheme}"


def run(config: RunConfig, *, out_dir: str | Path | None = None, use_ray: bool = True,
        console: Console | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every round of ``config``; return the summary. The run directory is printed at the end.
    ``resume``: continue the run in ``out_dir`` from its latest checkpoint (see :func:`resolve_resume`)."""
    from deft_ray.actors.launch import load_config_task
    from deft_ray.ledger import RunDirectory

    console = console or Console()
    run_dir = RunDirectory(out_dir or default_out_dir(config))
    console.print(f"deft-ray: {config.num_devices} devices, scheme {config.scheme}, task {config.data.task}, "
                  f"{config.rounds} rounds, {config.clock} clock")
    task = load_config_task(config)  # bad data fails here, before Ray starts
    stream = (_ray_stream(config, run_dir, task, resume) if use_ray else _local_stream(config, run_dir, task, resume))
    columns = (TextColumn("[bold]round"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    summary: dict[str, Any] = {}
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("rounds", total=config.rounds, status="starting devices")
        for item in stream:
            if isinstance(item, int):  # where a resumed run starts
                progress.update(bar, completed=item, status=f"resumed after round {item}")
                continue
            if not isinstance(item, RoundRecord):
                summary = item
                continue
            progress.console.print(_round_line(item))
            progress.update(bar, advance=1, status=f"loss {item.loss:.3f}")
    print_summary(summary, console)
    console.print(f"run directory: {run_dir.root.resolve()}")
    return summary


def _round_line(record: RoundRecord) -> str:
    line = (f"round {record.round:4d}  planned {record.planned_latency_s:.3f} s  measured "
            f"{record.measured_latency_s:.3f} s  bottleneck {record.bottleneck_device}  loss {record.loss:.4f}")
    if record.evaluation:
        line += "  " + "  ".join(f"{k} {v:.4f}" for k, v in record.evaluation.items())
    return line


def _local_stream(config: RunConfig, run_dir, task, resume: bool) -> Iterator[RoundRecord | dict | int]:
    from deft_ray.actors.launch import build_local

    coordinator = build_local(config, run_dir, task, resume=resume)
    yield coordinator.next_round - 1
    yield from coordinator.run()
    yield coordinator.summary


def _ray_stream(config: RunConfig, run_dir, task, resume: bool) -> Iterator[RoundRecord | dict | int]:
    """Start (or join) Ray, spawn the coordinator actor on this node (so the run directory is
    written where this process runs) and stream its records, each within the round timeout."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from deft_ray.actors.launch import DEVICE_STARTUP_TIMEOUT_S, PLAN_TIMEOUT_S, CoordinatorActor, unwrap_ray_error

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    coordinator = ray.remote(CoordinatorActor).options(num_cpus=0, scheduling_strategy=here, max_restarts=0)
    try:
        actor = coordinator.remote(config, str(run_dir.root.resolve()), task, resume)
        yield ray.get(actor.ready.remote(), timeout=DEVICE_STARTUP_TIMEOUT_S + 600)
        records = actor.run.remote()
        while True:
            ready, _ = ray.wait([records], timeout=config.round_timeout_s + PLAN_TIMEOUT_S)
            if not ready:
                raise RoundError(f"no round finished within round_timeout_s = {config.round_timeout_s:.0f} s; "
                                 "raise round_timeout_s or check the devices (`ray status`)")
            try:
                ref = next(records)
            except StopIteration:
                return
            yield ray.get(ref, timeout=60)
    except ray.exceptions.RayError as error:
        raise unwrap_ray_error(error) from None


def print_summary(summary: Mapping[str, Any], console: Console) -> None:
    table = Table(title="run summary", title_justify="left", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k} {v:.4g}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)
