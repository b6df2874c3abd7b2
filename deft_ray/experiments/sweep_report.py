"""Reporting of a parameter sweep (see :mod:`deft_ray.experiments.sweep`): the PNG (mean and 95% confidence
band per scheme against the swept setting, or solve time against K on log-log axes; object-oriented
matplotlib :class:`~matplotlib.figure.Figure`, no pyplot) and the rich summary table."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from rich.console import Console
from rich.table import Table
from scipy import stats

if TYPE_CHECKING:
    from deft_ray.experiments.sweep import SweepSettings

REFERENCE_SCHEME = "jbba"

DPI = 120
#: A fixed colour per scheme, so every sweep plot reads the same.
COLORS = {"jbba": "C3", "exact": "k", "crunch": "C0", "greedy": "C2",
          "depth-unaware": "C1", "random": "C4", "single-device": "C5", "random-bw": "C6",
          "greedy-bw": "C8", "depth-unaware-bw": "C9"}
STYLES = {"exact": dict(linestyle=":", marker="x", linewidth=1.5), "jbba": dict(linewidth=2.2),
          "crunch": dict(linestyle="--", marker="s", markerfacecolor="none", zorder=3)}
BLOCK_STYLES = ("-", "--", ":", "-.")
BLOCK_MARKERS = ("o", "s", "^", "D")


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its t-interval (``t * sd / sqrt(n)``; 0 for one value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def plot_sweep(name: str, rows: Sequence[dict], path: Path, *, xlabel: str, subtitle: str) -> Path:
    """One line per scheme (or per scheme and N for solve-time) with its 95% band."""
    series: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    timing = name == "solve-time"
    for row in rows:
        value = row["solve_time_s"] * 1e3 if timing else row["round_latency_s"]
        series[row["experiment"], row["scheme"]][row["x"]].append(value)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    experiments = list(dict.fromkeys(e for e, _ in series))
    for (experiment, scheme), by_x in series.items():
        xs = np.array(sorted(by_x))
        means, half = np.array([mean_ci(by_x[x]) for x in xs]).T
        index = experiments.index(experiment)
        style = {"color": COLORS.get(scheme), "marker": "o", "markersize": 4, **STYLES.get(scheme, {})}
        if timing:  # colour: scheme; line style and marker: N
            style = {"color": COLORS.get(scheme), "linestyle": BLOCK_STYLES[index % 4],
                     "marker": BLOCK_MARKERS[index % 4], "markersize": 4}
        line, = ax.plot(xs, means, label=scheme, **style)
        low = np.maximum(means - half, means * 1e-3) if timing else means - half
        ax.fill_between(xs, low, means + half, color=line.get_color(), alpha=0.12, linewidth=0)
    handles = [Line2D([], [], color=COLORS.get(s), label=s, linewidth=3) if timing else
               Line2D([], [], color=COLORS.get(s), label=s, **{"marker": "o", **STYLES.get(s, {})})
               for s in dict.fromkeys(s for _, s in series)]
    if timing:
        ax.set(xscale="log", yscale="log", ylabel="solve time (ms)")
        ax.set_xticks(sorted({x for by_x in series.values() for x in by_x}))
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_formatter("")
        handles += [Line2D([], [], color="grey", linestyle=BLOCK_STYLES[i % 4], marker=BLOCK_MARKERS[i % 4],
                           label=e.split("/")[-1].replace("N=", "N = ") + " blocks") for i, e in enumerate(experiments)]
        title = "planner solve time against the number of devices"
    elif name == "bandwidth":  # latency ~ 1/B: a log axis keeps the wide band readable
        ax.set(ylabel="round latency (s, log scale)", yscale="log")
        ax.set_xticks(sorted({x for by_x in series.values() for x in by_x}))
        ax.xaxis.set_major_formatter("{x:g}")
        ax.yaxis.set_major_formatter("{x:g}")
        ax.yaxis.set_minor_formatter("{x:g}")
        title = f"{name}: round latency of each scheme"
    else:
        ax.set(ylabel="round latency (s)")
        ax.set_ylim(bottom=0)
        title = f"{name}: round latency of each scheme"
    ax.set_xlabel(xlabel)
    ax.set_title(f"{title}\n{subtitle}", fontsize="medium")
    ax.grid(alpha=0.3, which="major")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5 if not timing else 4),
               fontsize="small", frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def print_summary(rows: Sequence[dict], reference: Callable[[str, list[float]], float], xlabel: str,
                  console: Console) -> None:
    """Per experiment (and N): each scheme's mean latency at the reference point relative to jbba
    (ratio of means), its mean solve time and its number of seeds."""
    grouped: dict[tuple[str, float, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row["experiment"], row["x"], row["scheme"]].append(row)
    for experiment in dict.fromkeys(key[0] for key in grouped):
        x = reference(experiment, [key[1] for key in grouped if key[0] == experiment])
        means = {scheme: (np.mean([r["round_latency_s"] for r in by_seed]),
                          np.mean([r["solve_time_s"] for r in by_seed]), len(by_seed))
                 for (e, px, scheme), by_seed in grouped.items() if e == experiment and px == x}
        ours = means.get(REFERENCE_SCHEME, (np.nan,))[0]
        table = Table(title=f"{experiment} at x = {x:g} ({xlabel})", title_justify="left")
        for column in ("scheme", "mean latency s", f"vs {REFERENCE_SCHEME}", "mean solve ms", "seeds"):
            table.add_column(column, justify="left" if column == "scheme" else "right")
        for scheme, (latency, solve_s, count) in sorted(means.items(), key=lambda item: item[1][0]):
            table.add_row(scheme, f"{latency:.4f}", f"{latency / ours:.3f}x", f"{solve_s * 1e3:.2f}", str(count),
                          style="bold" if scheme == REFERENCE_SCHEME else None)
        console.print(table)


def describe(name: str, settings: SweepSettings, seeds: int) -> str:
    """The fixed settings of an experiment, for the plot's subtitle (two lines)."""
    base = settings.population
    parts = {"devices": f"K={base.num_devices}", "bandwidth": f"B={base.bandwidth_hz / 1e6:g} MHz",
             "heterogeneity": "c~U[{:g},{:g}]".format(*base.compute_scale),
             "memory": "memory fraction [{:g},{:g}]".format(*base.memory_fraction),
             "distance": "d~U[{:g},{:g}] m".format(*base.distance_m)}
    swept = "devices" if name == "solve-time" else name
    fixed = ", ".join(text for key, text in parts.items() if key != swept)
    if name != "solve-time":
        return f"{settings.profile}, {fixed}\nmean and 95% confidence interval over {seeds} seeds per point"
    timing = settings.solve_time
    fewer = f" ({min(seeds, timing.large_seeds)} from K ≥ {timing.large_devices})" if seeds > timing.large_seeds else ""
    return (f"measured or synthetic blocks, {fixed}\n"
            f"mean and 95% confidence interval over {seeds} seeds per point{fewer}")
