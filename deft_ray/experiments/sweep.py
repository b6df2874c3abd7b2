"""Parameter sweeps of the planners (``deft-ray sweep``): round latency and solve time of every
scheme over random device populations (the paper's simulations, docs/method.md; no torch, no Ray).

An experiment varies one setting of the population (:class:`~deft_ray.edge.scenario.PopulationSpec`)
over a grid and, at every grid point ``x``, draws one instance per seed (the seed drives
:func:`~deft_ray.edge.scenario.random_instance`, so the same seed gives every scheme the same
instance) and plans it with every scheme. It writes ``<experiment>.csv`` (one row per
``(x, scheme, seed)``) and ``<experiment>.png`` (mean and 95% t-interval per scheme).
A scheme that cannot plan a draw (:class:`TooLargeError`, :class:`InfeasibleError`) gets no row
for it, and the console says how often that happened.

``solve-time`` times the fast schemes against the number of devices K for several block counts
N; its CSV rows carry ``experiment = "solve-time/N=<N>"``.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic.dataclasses import dataclass as pydantic_dataclass
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from deft_ray.config import read_yaml, validated
from deft_ray.config.sections import SECTION
from deft_ray.edge.profiles import load_profile
from deft_ray.errors import InfeasibleError, InputError, TooLargeError, UnknownNameError
from deft_ray.planners import BlockCost, scheme_names, solve
from deft_ray.edge.scenario import PopulationSpec, random_instance, synthetic_blocks
from deft_ray.experiments.sweep_report import REFERENCE_SCHEME, describe, plot_sweep, print_summary

COLUMNS = ("experiment", "x", "scheme", "seed", "round_latency_s", "solve_time_s")
#: Experiments, in the order ``all`` runs them, with the label of their x axis.
X_LABELS = {
    "devices": "number of devices K",
    "bandwidth": "total uplink bandwidth B (MHz)",
    "memory": "share of devices whose budget holds the deepest block (expected)",
    "heterogeneity": "compute-scale spread x: c_k ~ U[1, x] (slowest / fastest)",
    "distance": "cell radius x: distance ~ U[50 m, x] (m)",
    "solve-time": "number of devices K",
}


@pydantic_dataclass(frozen=True, kw_only=True, config=SECTION)
class Grids:
    """The x values of each experiment."""

    devices: tuple[int, ...] = (12, 16, 20, 24, 32, 40, 48)
    bandwidth_mhz: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0)
    memory_fraction: tuple[tuple[float, float], ...] = (
        (0.0, 1.05), (0.0, 1.1), (0.0, 1.2), (0.0, 1.5), (0.0, 2.0), (0.5, 2.0), (1.0, 1.2))
    """PopulationSpec.memory_fraction pairs [low, high], tight to loose; the plotted x is the
    expected share of devices able to hold the deepest block."""
    compute_scale_max: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0, 9.0)
    distance_max_m: tuple[float, ...] = (100.0, 250.0, 500.0, 750.0, 1000.0)


@pydantic_dataclass(frozen=True, kw_only=True, config=SECTION)
class SolveTimeSettings:
    devices: tuple[int, ...] = (12, 24, 48, 96, 192, 384, 512)
    """K values (those below N are skipped)."""
    blocks: tuple[int, ...] = (12, 24, 48)
    """N values: a measured profile with N blocks if one is listed, else synthetic blocks."""
    schemes: tuple[str, ...] = ("crunch", "jbba", "greedy", "depth-unaware", "exact")
    large_devices: int = 192
    """From this K on, only ``large_seeds`` seeds are timed."""
    large_seeds: int = 10


@pydantic_dataclass(frozen=True, kw_only=True, config=SECTION)
class SweepSettings:
    """Everything a sweep needs; mirrors ``configs/sweep.yaml`` (the paper's simulation defaults,
    docs/method.md)."""

    profile: str = "roberta-base_h200_fp32"
    """Block profile of every experiment but solve-time."""
    measured_profiles: tuple[str, ...] = ("roberta-base_h200_fp32", "roberta-large_h200_fp32")
    """Profiles solve-time uses for their block count N."""
    schemes: tuple[str, ...] = ("jbba", "crunch", "random", "greedy", "depth-unaware", "depth-unaware-bw", "single-device",
                                "exact")
    population: PopulationSpec = field(default_factory=PopulationSpec)
    """The population at every point; each experiment changes one of its settings."""
    grids: Grids = field(default_factory=Grids)
    solve_time: SolveTimeSettings = field(default_factory=SolveTimeSettings)


def experiment_names() -> list[str]:
    """The experiments, in the order ``all`` runs them, then ``all``."""
    return [*X_LABELS, "all"]


def load_sweep_settings(path: str | Path | None) -> SweepSettings:
    """Read a sweep YAML (``None`` gives the defaults); every key is optional.

    Raises:
        InputError: no such file, bad YAML, an unknown key, a wrong type or an unknown scheme.
    """
    if path is None:
        return _validate(SweepSettings())
    file = Path(path)
    if not file.is_file():
        raise InputError("--config", str(path), "no such file", "give the path of a sweep YAML")
    return _validate(validated(SweepSettings, read_yaml(file, option="--config")))


def _validate(settings: SweepSettings) -> SweepSettings:
    known = scheme_names()
    for where, names in (("schemes", settings.schemes), ("solve_time.schemes", settings.solve_time.schemes)):
        for name in names:
            if name not in known:
                raise InputError(where, name, "is not a scheme", f"use some of {', '.join(known)}")
        if REFERENCE_SCHEME not in names:  # the tables compare against it
            raise InputError(where, list(names), f"lacks {REFERENCE_SCHEME}", f"add {REFERENCE_SCHEME}")
    for name, values in [*vars(settings.grids).items(), ("solve_time.devices", settings.solve_time.devices),
                         ("solve_time.blocks", settings.solve_time.blocks)]:
        if not values:
            raise InputError(name if "." in name else f"grids.{name}", [], "is empty", "give at least one value")
    return settings


@dataclass(frozen=True)
class _Point:
    experiment: str
    x: float
    blocks: tuple[BlockCost, ...]
    spec: PopulationSpec
    schemes: tuple[str, ...]
    num_seeds: int


def run_sweep(experiment: str, *, seeds: int, out_dir: Path, settings: SweepSettings,
              console: Console | None = None, grid_override: Sequence | Mapping[str, Sequence] | None = None
              ) -> list[Path]:
    """Run one experiment (or ``all``) and write its CSV and PNG into ``out_dir``.

    Args:
        experiment: one of :func:`experiment_names`.
        seeds: random instances per grid point (solve-time: fewer from ``large_devices`` on).
        grid_override: x values replacing the settings' grid (for solve-time: the K values); a
            mapping from experiment name to values when ``experiment`` is ``all``.

    Returns:
        The written paths: ``<experiment>.csv`` then ``<experiment>.png`` for each experiment.

    Raises:
        UnknownNameError: an unknown experiment, listing the valid ones.
    """
    if experiment not in experiment_names():
        raise UnknownNameError("experiment", experiment, experiment_names())
    if seeds < 1:
        raise InputError("--seeds", seeds, "must be at least 1", "give e.g. --seeds 50")
    console = console or Console()
    names = list(X_LABELS) if experiment == "all" else [experiment]
    if grid_override is not None and not isinstance(grid_override, Mapping):
        if experiment == "all":
            raise InputError("grid_override", grid_override, "is a list for 'all'", "give {experiment: values}")
        grid_override = {experiment: grid_override}
    for name in grid_override or {}:
        if name not in X_LABELS:
            raise UnknownNameError("experiment", name, list(X_LABELS))
    paths: list[Path] = []
    for name in names:
        grid = (grid_override or {}).get(name)
        points = _points(name, settings, seeds, None if grid is None else tuple(grid), console)
        rows = _run_points(name, points, console)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths.append(_write_csv(rows, out / f"{name}.csv"))
        paths.append(plot_sweep(name, rows, out / f"{name}.png", xlabel=X_LABELS[name],
                                subtitle=describe(name, settings, seeds)))
        print_summary(rows, lambda experiment, xs: reference_x(experiment, settings, xs), X_LABELS[name], console)
    return paths


def _points(name: str, settings: SweepSettings, seeds: int, grid: tuple | None, console: Console) -> list[_Point]:
    base, grids = settings.population, settings.grids
    if name == "solve-time":
        return _solve_time_points(settings, seeds, grid, console)
    blocks = load_profile(settings.profile)
    changes = {
        "devices": lambda k: ({"num_devices": int(k)}, int(k)),
        "bandwidth": lambda mhz: ({"bandwidth_hz": float(mhz) * 1e6}, float(mhz)),
        "memory": lambda pair: ({"memory_fraction": tuple(map(float, pair))}, _holding_share(blocks, pair)),
        "heterogeneity": lambda hi: ({"compute_scale": (base.compute_scale[0], float(hi))}, float(hi)),
        "distance": lambda hi: ({"distance_m": (base.distance_m[0], float(hi))}, float(hi)),
    }[name]
    grid = grid or {"devices": grids.devices, "bandwidth": grids.bandwidth_mhz, "memory": grids.memory_fraction,
                    "heterogeneity": grids.compute_scale_max, "distance": grids.distance_max_m}[name]
    points = [_Point(name, x, blocks, replace(base, **update), settings.schemes, seeds)
              for update, x in map(changes, grid)]
    if len({p.x for p in points}) < len(points):
        raise InputError(f"grids.{name}", [list(g) if isinstance(g, tuple) else g for g in grid],
                         "two values give the same x", "give each point once")
    console.print(f"[bold]{name}[/]: {len(points)} points x {seeds} seeds x {len(settings.schemes)} schemes; "
                  f"x = {escape(X_LABELS[name])}: {', '.join(f'{p.x:g}' for p in points)}")
    return points


def _solve_time_points(settings: SweepSettings, seeds: int, grid: tuple | None, console: Console) -> list[_Point]:
    timing = settings.solve_time
    measured = {len(blocks): blocks for blocks in map(load_profile, settings.measured_profiles)}
    points = []
    for n in timing.blocks:
        blocks = measured.get(n) or synthetic_blocks(n, np.random.default_rng(n))
        for k in grid or timing.devices:
            if k >= n:
                num_seeds = min(seeds, timing.large_seeds) if k >= timing.large_devices else seeds
                points.append(_Point(f"solve-time/N={n}", int(k), blocks,
                                     replace(settings.population, num_devices=int(k)), timing.schemes, num_seeds))
    console.print(f"[bold]solve-time[/]: N in {list(timing.blocks)} (measured profile where one has N blocks, "
                  f"else synthetic), K in {list(grid or timing.devices)} (K >= N), schemes {', '.join(timing.schemes)}; "
                  f"{seeds} seeds, {min(seeds, timing.large_seeds)} from K >= {timing.large_devices}")
    return points


def _holding_share(blocks: Sequence[BlockCost], fraction: Sequence[float]) -> float:
    """Expected share of budgets U[low, high] (as random_instance draws them) above the deepest block's need."""
    memory = np.array([b.memory_bytes for b in blocks])
    low = memory.min() + fraction[0] * (memory.max() - memory.min())
    high = memory.max() * fraction[1]
    if high <= low:
        return float(low >= memory.max())
    return round(float(np.clip((high - memory.max()) / (high - low), 0.0, 1.0)), 4)


def _run_points(name: str, points: list[_Point], console: Console) -> list[dict]:
    rows: list[dict] = []
    skipped: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (why, scheme) -> x -> draws
    examples: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(name, total=sum(p.num_seeds * len(p.schemes) for p in points))
        for point in points:
            progress.update(task, description=f"{point.experiment} x={point.x:g}")
            for seed in range(point.num_seeds):
                instance = random_instance(point.blocks, point.spec, np.random.default_rng(seed))
                for scheme in point.schemes:
                    try:
                        plan = solve(instance, scheme, seed=seed)
                    except (TooLargeError, InfeasibleError) as error:
                        why = "too large" if isinstance(error, TooLargeError) else "infeasible draw"
                        skipped[why, scheme][point.x] += 1
                        examples.setdefault(why, str(error))
                    else:
                        rows.append({"experiment": point.experiment, "x": point.x, "scheme": scheme, "seed": seed,
                                     "round_latency_s": plan.round_latency_s, "solve_time_s": plan.solve_time_s})
                    progress.advance(task)
    groups: dict[tuple, list[str]] = defaultdict(list)  # schemes skipped alike share a line
    for (why, scheme), by_x in skipped.items():
        groups[why, tuple(by_x.items())].append(scheme)
    for (why, by_x), schemes in groups.items():
        where = ", ".join(f"x={x:g}: {count}" for x, count in by_x)
        console.print(f"  skipped ({why}) {', '.join(schemes)}: no row for {sum(c for _, c in by_x)} draws "
                      f"({where})", style="dim")
    for why, example in examples.items():
        console.print(f"  {why}, e.g.: {example}", style="dim")
    return rows


def _write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({**row, "round_latency_s": repr(row["round_latency_s"]),
                          "solve_time_s": repr(row["solve_time_s"])} for row in rows)
    return path


def read_sweep_csv(path: str | Path) -> list[dict]:
    """Rows of a sweep CSV with numbers parsed."""
    with Path(path).open(newline="") as file:
        return [{"experiment": r["experiment"], "x": float(r["x"]), "scheme": r["scheme"], "seed": int(r["seed"]),
                 "round_latency_s": float(r["round_latency_s"]), "solve_time_s": float(r["solve_time_s"])}
                for r in csv.DictReader(file)]


def reference_x(experiment: str, settings: SweepSettings, xs: Sequence[float]) -> float:
    """The swept point nearest the default population (K = 20, 10 MHz, ...): the sweep's middle."""
    base = settings.population
    blocks = load_profile(settings.profile)
    target = {"devices": base.num_devices, "bandwidth": base.bandwidth_hz / 1e6,
              "memory": _holding_share(blocks, base.memory_fraction), "heterogeneity": base.compute_scale[1],
              "distance": base.distance_m[1], "solve-time": base.num_devices}[experiment.split("/")[0]]
    return min(sorted(xs), key=lambda x: abs(x - target))


def by_point(rows: Sequence[dict]) -> dict[tuple[str, float, str], dict[int, dict]]:
    grouped: dict[tuple[str, float, str], dict[int, dict]] = defaultdict(dict)
    for row in rows:
        grouped[row["experiment"], row["x"], row["scheme"]][row["seed"]] = row
    return grouped


def reduction_table(csv_path: str | Path, settings: SweepSettings | None = None) -> list[dict]:
    """Round-latency reduction of jbba against every other scheme, per experiment in the CSV.

    The reduction at a point is the mean over seeds of ``1 - jbba / other``, paired by seed (the
    same instance), over the seeds where both schemes planned; positive means jbba is faster.
    Points: the sweep's lowest x, its reference x (nearest the default population, see
    :func:`reference_x`) and its highest x.

    Returns:
        One dict per (experiment, scheme): ``experiment, scheme, x_low, x_reference, x_high,
        reduction_low, reduction_reference, reduction_high, num_seeds`` (fewest seeds paired);
        a reduction is NaN where the scheme has no row at that point.
    """
    settings = settings or load_sweep_settings(None)
    grouped = by_point(read_sweep_csv(csv_path))
    table = []
    for experiment in dict.fromkeys(key[0] for key in grouped):
        xs = sorted({key[1] for key in grouped if key[0] == experiment})
        at = {"low": xs[0], "reference": reference_x(experiment, settings, xs), "high": xs[-1]}
        for scheme in dict.fromkeys(key[2] for key in grouped if key[0] == experiment):
            if scheme == REFERENCE_SCHEME:
                continue
            row: dict[str, Any] = {"experiment": experiment, "scheme": scheme}
            counts = []
            for label, x in at.items():
                ours, theirs = grouped.get((experiment, x, REFERENCE_SCHEME), {}), grouped.get((experiment, x, scheme), {})
                paired = [1 - ours[s]["round_latency_s"] / theirs[s]["round_latency_s"] for s in ours if s in theirs]
                row[f"x_{label}"] = x
                row[f"reduction_{label}"] = float(np.mean(paired)) if paired else float("nan")
                counts.append(len(paired))
            table.append({**row, "num_seeds": min(counts)})
    return table
