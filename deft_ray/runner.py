"""``deft-ray run``: resolve the config, check it before Ray starts, drive the rounds with progress output.

The same function serves ``deft-ray run`` and the job entrypoints; the rounds come from
:func:`~deft_ray.actors.launch.ray_stream` (a bare ``ray.init()`` joins the cluster named by
``RAY_ADDRESS``, as under ``ray job submit``, or starts a local one) or, with ``--local``, from
:func:`~deft_ray.actors.launch.local_stream`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deft_ray.config import RunConfig, apply_overrides, load_config
from deft_ray.errors import InputError
from deft_ray.experiments.terminal import output_console
from deft_ray.reporting import Reporter, make_reporters
from deft_ray.runtime.interrupts import Interrupted, StopNow, StopRequest, stop_on_signals
from deft_ray.runtime.preflight import check_against_data, check_against_model
from deft_ray.runtime.records import (DevicesStarting, EventKind, RoundRecord, RunFinished, RunInterrupted,
                                      RunStarted, RunSummary, RunWarning)


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


def resolve_resume(run_dir: str | Path, overrides: Mapping[str, Any]) -> RunConfig:
    """The config of the run in ``run_dir`` (its ``config.yaml``) with the overrides a resumed run
    may change, after checking that its latest checkpoint is readable and fits that config.

    Raises:
        InputError: ``run_dir`` is not a run directory, or an override cannot change on resume.
        CheckpointError: no usable checkpoint (it is left as it is).
    """
    from deft_ray.runtime.checkpoint import RESUMABLE_CHANGES, load_resumable
    from deft_ray.runtime.ledger import RunDirectory

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
    _, checkpoint = load_resumable(directory, config)
    if config.rounds < checkpoint.round_idx:
        raise InputError("rounds", config.rounds, f"is fewer than the {checkpoint.round_idx} rounds the run has done",
                         f"give --rounds {checkpoint.round_idx} or more")
    return config


def default_out_dir(config: RunConfig) -> Path:
    return Path(config.storage_path).expanduser() / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.scheme}"


#: ``--log-format`` values: ``text`` prints a line per round (a progress bar on a terminal),
#: ``json`` one JSON object per round (the round's ledger line) and one for the summary.
LOG_FORMATS = ("text", "json")


def run(config: RunConfig, *, out_dir: str | Path | None = None, use_ray: bool = True,
        console: Console | None = None, resume: bool = False, overwrite: bool = False,
        log_format: str = "text", quiet: bool = False) -> RunSummary | None:
    """Run every round of ``config``; return the summary. The run directory is printed at the end.

    Output goes to ``console`` (default: stdout, laid out :data:`~deft_ray.experiments.terminal.LOG_WIDTH`
    columns wide when it is not a terminal, so round lines never wrap in a log). ``quiet`` prints
    only the summary and the run directory. ``log_format="json"`` prints, instead, one JSON object
    per line: each round's ledger line (docs/architecture.md, "Run directory"), then
    ``{"summary": ..., "run_directory": ...}``; the opening line goes to stderr.

    ``resume``: continue the run in ``out_dir`` from its latest checkpoint (see :func:`resolve_resume`).
    A new run refuses an ``out_dir`` that holds a run unless ``overwrite`` is set; two runs never
    write one directory at once. A first SIGINT or SIGTERM stops the run after the round in flight
    with a checkpoint of it, a second at once; either way :class:`Interrupted` says how to resume.
    """
    from deft_ray.actors.launch import local_stream, ray_stream
    from deft_ray.runtime.build import load_config_task
    from deft_ray.runtime.ledger import RunDirectory

    if log_format not in LOG_FORMATS:
        raise InputError("--log-format", log_format, "is not a log format", f"give one of {', '.join(LOG_FORMATS)}")
    console = console or output_console()
    run_dir = RunDirectory(out_dir or default_out_dir(config))
    reporters = make_reporters(config.report_to)  # a missing extra fails here, before Ray starts
    task = load_config_task(config)  # bad data fails here, before Ray starts
    check_against_data(config, task)
    stop = StopRequest()
    with run_dir.locked("--resume" if resume else "--out"), stop_on_signals(stop), \
            _reporting(reporters, config, run_dir.root) as report:
        if not resume:
            run_dir.claim(overwrite=overwrite)
        opening = (f"deft-ray: {config.num_devices} devices, scheme {config.scheme}, task {config.data.task}, "
                   f"{config.rounds} rounds, {config.clock} clock")
        if log_format == "json":
            print(opening, file=sys.stderr, flush=True)
        elif not quiet:
            console.print(opening, soft_wrap=True)
        report.start()
        try:
            summary = _follow((ray_stream if use_ray else local_stream)(config, run_dir, task, resume, stop),
                              config, console, log_format=log_format, quiet=quiet, reporters=reporters)
            if isinstance(summary, RunSummary):
                report.finish(summary)
        except StopNow as now:
            from deft_ray.runtime.checkpoint import latest_checkpoint

            last = latest_checkpoint(run_dir.checkpoints_dir)
            raise Interrupted(f"stopped at once on a second {_signal_name(now.signum)}; "
                              + (f"the last checkpoint is {last}; resume with `deft-ray run --resume {run_dir.root}`"
                                 if last else "no round was checkpointed"), signum=now.signum) from None
    if isinstance(summary, RunInterrupted):
        where = (f"checkpoint {summary.checkpoint}; resume with `deft-ray run --resume {run_dir.root}`"
                 if summary.checkpoint else "no round completed, so there is nothing to resume")
        raise Interrupted(f"{_signal_name(stop.signum)}: stopped after round {summary.rounds_done}; {where}",
                          signum=stop.signum)
    if log_format == "json":
        print(json.dumps({"summary": summary.to_json(), "run_directory": str(run_dir.root.resolve())}),
              file=console.file, flush=True)
        return summary
    print_summary(summary, console)
    console.print(f"run directory: {run_dir.root.resolve()}", soft_wrap=True)
    return summary


class _Reporting:
    """The run's reporters (``report_to``) around the run: started once the run directory is
    claimed, given the summary at the end, closed whatever happens."""

    def __init__(self, reporters: Sequence[Reporter], config: RunConfig, run_dir: Path):
        self.reporters, self.config, self.run_dir = reporters, config, run_dir
        self.started: list[Reporter] = []
        self.completed = False

    def start(self) -> None:
        for reporter in self.reporters:
            reporter.start(self.config, self.run_dir)
            self.started.append(reporter)

    def finish(self, summary: RunSummary) -> None:
        for reporter in self.started:
            reporter.finish(summary, self.run_dir)
        self.completed = True

    def close(self) -> None:
        for reporter in self.started:
            reporter.close(completed=self.completed)


@contextlib.contextmanager
def _reporting(reporters: Sequence[Reporter], config: RunConfig, run_dir: Path) -> Iterator[_Reporting]:
    report = _Reporting(reporters, config, run_dir)
    try:
        yield report
    finally:
        report.close()


def _follow(stream, config: RunConfig, console: Console, *, log_format: str = "text",
            quiet: bool = False, reporters: Sequence[Reporter] = ()) -> RunSummary | RunInterrupted:
    """Print the stream's rounds (under a progress bar on a terminal); return how the run ended."""
    columns = (TextColumn("[bold]round"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=True,
                  disable=quiet or log_format == "json" or not console.is_terminal) as progress:
        bar = progress.add_task("rounds", total=config.rounds, status="starting devices")
        for item in stream:
            if isinstance(item, DevicesStarting):
                progress.update(bar, status=f"starting devices: {item.ready} of {item.total} ready")
            elif isinstance(item, RunStarted):
                progress.update(bar, completed=item.rounds_done, status=f"resumed after round {item.rounds_done}"
                                if item.rounds_done else "running")
            elif isinstance(item, RoundRecord):
                for reporter in reporters:
                    reporter.log_round(item)
                if log_format == "json":
                    print(json.dumps(item.to_json()), file=console.file, flush=True)
                elif not quiet:
                    progress.console.print(round_line(item), soft_wrap=True, markup=False, highlight=False)
                progress.update(bar, advance=1, status=f"loss {item.loss:.3f}")
            elif isinstance(item, RunWarning):
                print(f"deft-ray: warning: {item.message}", file=sys.stderr, flush=True)
            elif isinstance(item, (RunFinished, RunInterrupted)):
                return item.summary if isinstance(item, RunFinished) else item
    raise AssertionError("the run's stream ended without a finish")


def _signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "signal"


def round_line(record: RoundRecord) -> str:
    line = (f"round {record.round_idx:4d}  planned {record.planned_latency_s:.3f} s  measured "
            f"{record.measured_latency_s:.3f} s  bottleneck {record.bottleneck_device}  loss {record.loss:.4f}")
    if record.evaluation:
        line += "  " + "  ".join(f"{k} {v:.4f}" for k, v in record.evaluation.items())
    if record.waited_s:
        line += f"  waited {record.waited_s:.1f} s for devices"
    warnings = [e for e in record.events if e.kind is EventKind.PLANNER_WARNING]
    if warnings:
        line += f"  ({len(warnings)} planner warning{'s' * (len(warnings) > 1)})"
    return line


def print_summary(summary: RunSummary, console: Console) -> None:
    table = Table(title="run summary", title_justify="left", show_header=False)
    for key, value in summary.to_json().items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k} {v:.4g}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)
