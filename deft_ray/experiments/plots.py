"""PNG plots of a run's round records (its ``metrics.jsonl``; no torch, no Ray).

``write_run_plots`` draws one run: round latency, the evaluation metric and training loss against
emulated time, and each device's compute and upload seconds; ``write_label_distribution_plot`` each
device's training examples by label. ``write_comparison_plot`` overlays
several runs' metric against emulated time (time to accuracy per scheme), and
``write_latency_comparison_plot`` their round latencies. Figures are built with
the object-oriented :class:`~matplotlib.figure.Figure` API, so no display is needed and pyplot's
global state is untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from deft_ray.runtime.records import Event, RoundRecord

Record = RoundRecord
DPI = 120


def write_run_plots(records: Sequence[Record], out_dir: str | Path, *, metric: str) -> list[Path]:
    """Write ``latency.png``, ``metric.png`` and ``devices.png`` for one run into ``out_dir``.

    Args:
        records: the run's round records (:func:`~deft_ray.runtime.ledger.read_ledger` reads them).
        out_dir: folder for the PNGs; created if missing.
        metric: key of the evaluation metric to plot, e.g. ``"accuracy"``.

    Returns:
        The paths of the three PNGs, in the order above.

    Raises:
        ValueError: ``records`` is empty, or rounds were evaluated but none reports ``metric``.
    """
    if not records:
        raise ValueError("records is empty: there are no rounds to plot; run at least one round")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [_plot_latency(records, out / "latency.png"),
            _plot_metric(records, out / "metric.png", metric),
            _plot_devices(records, out / "devices.png")]


def write_comparison_plot(runs: Mapping[str, Sequence[Record]], out_path: str | Path, *,
                          metric: str, target: float | None = None, title: str | None = None) -> Path:
    """One line per run (labelled by its key, e.g. the scheme) of ``metric`` against emulated time,
    with ``target`` as a dashed line when given.

    A run without any evaluation still gets a legend entry, marked "(no evaluation)".

    Raises:
        ValueError: ``runs`` is empty.
    """
    if not runs:
        raise ValueError("runs is empty: give at least one {label: records} entry to compare")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for label, records in runs.items():
        times_s, values = _evaluation_points(records, metric)
        ax.plot(times_s, values, "o-", markersize=4,
                label=label if len(values) else f"{label} (no evaluation)")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    ax.set(xlabel="emulated time (s)", ylabel=metric, title=title or f"{metric} against emulated time")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, Path(out_path))


def write_latency_comparison_plot(runs: Mapping[str, Sequence[Record]], out_path: str | Path) -> Path:
    """One colour per run (labelled by its key): measured round latency per round as a solid line,
    planned as a dashed one.

    Raises:
        ValueError: ``runs`` is empty.
    """
    if not runs:
        raise ValueError("runs is empty: give at least one {label: records} entry to compare")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for index, (label, records) in enumerate(runs.items()):
        rounds = [r.round_idx for r in records]
        ax.plot(rounds, _floats(r.measured_latency_s for r in records), "-", color=f"C{index}",
                label=f"{label} measured")
        ax.plot(rounds, _floats(r.planned_latency_s for r in records), "--", color=f"C{index}", alpha=0.7,
                label=f"{label} planned")
    ax.set(xlabel="round", ylabel="round latency (s)", title="round latency per round")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, Path(out_path))


def write_label_distribution_plot(device_names: Sequence[str], label_names: Sequence[str], counts: np.ndarray,
                                  out_path: str | Path) -> Path:
    """Per device, one stacked bar of its training examples by label (``counts``: devices x labels),
    its total written at the bar's end: how skewed the partition is."""
    counts = np.asarray(counts)
    fig = Figure(figsize=(7, max(2.5, 1.6 + 0.35 * len(device_names))), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(device_names))
    left = np.zeros(len(device_names))
    for j, label in enumerate(label_names):
        ax.barh(y, counts[:, j], left=left, color=f"C{j % 10}", label=f"label {label}")
        left += counts[:, j]
    for i, total in enumerate(left):
        ax.text(total, i, f" {int(total)}", va="center", fontsize="small")
    ax.set_yticks(y, list(device_names))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * max(float(left.max(initial=0.0)), 1.0))
    ax.set(xlabel="training examples", ylabel="device", title="training examples per device, by label")
    ax.grid(axis="x", alpha=0.3)
    _legend_below(fig, ax.containers)
    return _save(fig, Path(out_path))


def _plot_latency(records: Sequence[Record], path: Path) -> Path:
    """Planned and measured round latency per round, events as annotated dotted lines."""
    rounds = np.array([r.round_idx for r in records], dtype=float)
    planned_s = _floats(r.planned_latency_s for r in records)
    measured_s = _floats(r.measured_latency_s for r in records)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    lines = ax.plot(rounds, planned_s, "o-", markersize=4, label="planned")
    if np.isfinite(measured_s).any():
        lines += ax.plot(rounds, measured_s, "s--", markersize=4, label="measured")
    for record in records:
        kinds = [_event_label(e) for e in record.events]
        if kinds:
            ax.axvline(record.round_idx, color="grey", linestyle=":", linewidth=1)
            ax.text(record.round_idx, 0.98, "\n".join(kinds), transform=ax.get_xaxis_transform(),
                    ha="left", va="top", fontsize="x-small", color="dimgrey",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
    ax.set(xlabel="round", ylabel="round latency (s)",
           title=f"{_scheme(records)}round latency, planned vs measured")
    ax.set_ylim(bottom=0, top=1.15 * np.nanmax(np.concatenate([planned_s, measured_s, [1e-9]])))
    ax.set_xlim(rounds.min() - 0.5, rounds.max() + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    _legend_below(fig, lines)
    return _save(fig, path)


def _plot_metric(records: Sequence[Record], path: Path, metric: str) -> Path:
    """The metric at evaluated rounds and the training loss, both against emulated time."""
    times_s, values = _evaluation_points(records, metric)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    label = metric if len(values) else f"{metric} (none yet)"
    lines = ax.plot(times_s, values, "o-", color="C0", label=label)
    if not len(values):
        ax.set_yticks([])
        ax.text(0.5, 0.95, "no evaluation yet", transform=ax.transAxes, ha="center", va="top",
                color="dimgrey", bbox={"facecolor": "white", "edgecolor": "lightgrey"})
    loss_ax = ax.twinx()
    lines += loss_ax.plot(_floats(r.emulated_time_s for r in records),
                          _floats(r.loss for r in records), ".--", color="C1", alpha=0.8,
                          label="training loss")
    ax.set_ylabel(metric, color="C0")
    ax.set(xlabel="emulated time (s)",
           title=f"{_scheme(records)}{metric} and training loss against emulated time")
    loss_ax.set_ylabel("training loss", color="C1")
    ax.grid(alpha=0.3)
    _legend_below(fig, lines)
    return _save(fig, path)


def _plot_devices(records: Sequence[Record], path: Path) -> Path:
    """Per device: stacked bars of total compute and upload seconds, rounds taken part in,
    bottleneck; and, beside them, the energy it spent (every phase of every round)."""
    totals: dict[str, list[float]] = {}  # name -> [compute_s, upload_s, rounds, bottleneck rounds]
    energy: dict[str, float] = {}
    for record in records:
        for name, device in record.devices.items():
            row = totals.setdefault(name, [0.0, 0.0, 0, 0])
            row[0] += device.compute_s or 0.0
            row[1] += device.upload_s or 0.0
            row[2] += 1
        for phase_devices in (record.devices, *(phase.devices for phase in record.recovery)):
            for name, device in phase_devices.items():
                totals.setdefault(name, [0.0, 0.0, 0, 0])
                energy[name] = energy.get(name, 0.0) + (device.energy_j or 0.0)
        if record.bottleneck_device in totals:
            totals[record.bottleneck_device][3] += 1
    names = sorted(totals, key=_natural_key)
    compute_s = np.array([totals[n][0] for n in names])
    upload_s = np.array([totals[n][1] for n in names])
    fig = Figure(figsize=(10, max(2.5, 1.6 + 0.45 * len(names))), layout="constrained")
    ax, energy_ax = fig.subplots(1, 2, sharey=True, width_ratios=(2.2, 1))
    y = np.arange(len(names))
    ax.barh(y, compute_s, color="C0", label="compute")
    ax.barh(y, upload_s, left=compute_s, color="C2", label="upload")
    for i, name in enumerate(names):
        num_rounds, num_bottleneck = totals[name][2], totals[name][3]
        note = f"{num_rounds} round{'s' * (num_rounds != 1)}"
        if num_bottleneck:
            note += f", bottleneck in {num_bottleneck}"
        ax.text(0.99, i, note, transform=ax.get_yaxis_transform(), ha="right", va="center",
                fontsize="small", fontweight="bold" if num_bottleneck else "normal")
    ax.set_yticks(y, [f"{n} *" if totals[n][3] else n for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.6 * max(float((compute_s + upload_s).max(initial=0.0)), 1e-9))
    ax.set(xlabel=f"emulated seconds, summed over {len(records)} round(s)", ylabel="device",
           title=f"{_scheme(records)}per-device compute and upload time (* = was the bottleneck)")
    ax.grid(axis="x", alpha=0.3)
    energy_ax.barh(y, [energy.get(n, 0.0) for n in names], color="C3", label="energy")
    energy_ax.set(xlabel=f"joules, total {sum(energy.values()):.4g}", title="energy (compute + upload)")
    energy_ax.grid(axis="x", alpha=0.3)
    _legend_below(fig, [*ax.containers, *energy_ax.containers])
    return _save(fig, path)


def _evaluation_points(records: Sequence[Record], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Emulated time and metric value of every evaluated round.

    Raises:
        ValueError: rounds were evaluated but none reports ``metric`` (a misspelt name).
    """
    evaluated = [r for r in records if r.evaluation]
    points = [(r.emulated_time_s, r.evaluation[metric]) for r in evaluated if r.evaluation.get(metric) is not None]
    if evaluated and not points:
        found = sorted({key for r in evaluated for key in r.evaluation})
        raise ValueError(f"metric = {metric!r}: no evaluation reports it; metrics found: "
                         f"{', '.join(found)}")
    return _floats(p[0] for p in points), _floats(p[1] for p in points)


def _floats(values: Any) -> np.ndarray:
    """Floats with ``None`` turned into NaN (a gap in a line)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _event_label(event: Event) -> str:
    return " ".join(part for part in (event.kind.value, event.device) if part)


def _natural_key(name: str) -> tuple:
    """Sort key that orders ``d2`` before ``d10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", name))


def _scheme(records: Sequence[Record]) -> str:
    """``"jbba: "`` from the first record's plan, or ``""`` when absent (a title prefix)."""
    scheme = records[0].plan.scheme
    return f"{scheme}: " if scheme else ""


def _legend_below(fig: Figure, handles: Sequence[Any]) -> None:
    """One row of legend entries under the axes, where it can cover neither data nor notes."""
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center",
               ncols=len(handles), fontsize="small", frameon=False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
