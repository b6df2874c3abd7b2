"""deft-ray sweep: every experiment on tiny grids with 2 seeds (the whole file runs in seconds)."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from deft_ray.errors import InputError, UnknownNameError
from deft_ray.experiments.sweep import (COLUMNS, SolveTimeSettings, SweepSettings, experiment_names, load_sweep_settings,
                            read_sweep_csv, reduction_table, run_sweep)

REPO = Path(__file__).resolve().parents[1]
SEEDS = 2
TINY_GRIDS = {"devices": [12, 20], "bandwidth": [2.0, 10.0], "memory": [[0.0, 1.1], [0.0, 1.2], [1.0, 1.2]],
              "heterogeneity": [1.0, 5.0], "distance": [100.0, 500.0], "solve-time": [12, 24]}
SETTINGS = replace(SweepSettings(), solve_time=SolveTimeSettings(blocks=(12, 16), large_devices=24, large_seeds=1))


def _console() -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, width=120), text


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, list[Path], str]:
    out = tmp_path_factory.mktemp("sweep")
    console, text = _console()
    paths = run_sweep("all", seeds=SEEDS, out_dir=out, settings=SETTINGS, console=console, grid_override=TINY_GRIDS)
    return out, paths, text.getvalue()


def test_every_experiment_writes_a_csv_and_a_png(swept):
    out, paths, _ = swept
    names = [n for n in experiment_names() if n != "all"]
    assert paths == [out / f"{n}.{ext}" for n in names for ext in ("csv", "png")]
    for name in names:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with (out / f"{name}.csv").open(newline="") as file:
            assert tuple(next(csv.reader(file))) == COLUMNS


def test_rows_cover_every_point_scheme_and_seed(swept):
    out, _, _ = swept
    for name in ("devices", "bandwidth", "memory", "heterogeneity", "distance"):
        rows = read_sweep_csv(out / f"{name}.csv")
        keys = {(r["x"], r["scheme"], r["seed"]) for r in rows}
        assert len(keys) == len(rows)
        assert len({r["x"] for r in rows}) == len(TINY_GRIDS[name])
        assert keys == {(x, s, seed) for x in {r["x"] for r in rows} for s in SETTINGS.schemes for seed in range(SEEDS)}


def test_solve_time_rows_per_block_count_and_fewer_seeds_when_large(swept):
    out, _, _ = swept
    rows = read_sweep_csv(out / "solve-time.csv")
    points = defaultdict(set)
    for r in rows:
        points[r["experiment"], r["x"], r["scheme"]].add(r["seed"])
    assert {e for e, _, _ in points} == {"solve-time/N=12", "solve-time/N=16"}
    assert {s for _, _, s in points} == set(SETTINGS.solve_time.schemes)
    assert points["solve-time/N=12", 12.0, "jbba"] == {0, 1}
    assert points["solve-time/N=12", 24.0, "jbba"] == {0}  # K >= large_devices: large_seeds seeds
    assert ("solve-time/N=16", 12.0, "jbba") not in points  # K < N is skipped
    assert all(r["solve_time_s"] > 0 for r in rows)


def test_scheme_order_on_the_same_instance(swept):
    """Same seed, same instance: jbba <= crunch, and the exact optimum <= jbba."""
    out, _, _ = swept
    for name in [n for n in experiment_names() if n != "all"]:
        latency = {(r["experiment"], r["x"], r["seed"], r["scheme"]): r["round_latency_s"]
                   for r in read_sweep_csv(out / f"{name}.csv")}
        for (experiment, x, seed, scheme), value in latency.items():
            if scheme == "jbba":
                assert value <= latency[experiment, x, seed, "crunch"] * (1 + 1e-9), (experiment, x, seed)
                assert latency[experiment, x, seed, "exact"] <= value * (1 + 1e-6), (experiment, x, seed)


def test_reduction_table(swept):
    out, _, _ = swept
    table = reduction_table(out / "devices.csv")
    assert {row["scheme"] for row in table} == {"crunch", "random", "greedy", "depth-unaware", "depth-unaware-bw",
                                                "single-device", "exact"}
    crunch = next(row for row in table if row["scheme"] == "crunch")
    assert (crunch["x_low"], crunch["x_reference"], crunch["x_high"]) == (12.0, 20.0, 20.0)
    assert crunch["num_seeds"] == SEEDS
    assert all(0.0 <= crunch[f"reduction_{p}"] < 1.0 for p in ("low", "reference", "high"))
    bisection = next(row for row in table if row["scheme"] == "exact")
    assert bisection["reduction_reference"] <= 1e-6
    assert all(not math.isnan(row["reduction_reference"]) for row in table)


def test_summary_table_is_printed(swept):
    _, _, text = swept
    assert "devices at x = 20" in text and "vs jbba" in text


def test_unknown_experiment_lists_the_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown experiment 'latency'.*devices, bandwidth"):
        run_sweep("latency", seeds=1, out_dir=tmp_path, settings=SETTINGS)


def test_default_settings_mirror_the_yaml():
    assert load_sweep_settings(REPO / "configs" / "sweep.yaml") == load_sweep_settings(None) == SweepSettings()


@pytest.mark.parametrize("text, field", [
    ("seeds: 3\n", "seeds"),
    ("population:\n  num_device: 20\n", "population.num_device"),
    ("grids:\n  devices: [12]\n  bandwith_mhz: [1.0]\n", "grids.bandwith_mhz"),
    ("schemes: [jbba, crunchy]\n", "schemes"),
])
def test_bad_settings_key_names_it(tmp_path, text, field):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"^{field}\b") as error:
        load_sweep_settings(path)
    assert error.value.field == field


def test_override_grid_of_one_experiment(tmp_path):
    console, _ = _console()
    paths = run_sweep("bandwidth", seeds=1, out_dir=tmp_path, settings=SETTINGS, console=console,
                      grid_override=[5.0])
    assert {r["x"] for r in read_sweep_csv(paths[0])} == {5.0}


def test_infeasible_draws_are_skipped_and_reported(tmp_path):
    """Budgets U[m_min, m_max]: no device holds the deepest block, so no scheme can plan."""
    settings = replace(SETTINGS, population=replace(SETTINGS.population, max_draws=3))
    console, text = _console()
    paths = run_sweep("memory", seeds=1, out_dir=tmp_path, settings=settings, console=console,
                      grid_override=[[0.0, 1.0], [1.0, 1.2]])
    assert {r["x"] for r in read_sweep_csv(paths[0])} == {1.0}
    assert "skipped (infeasible draw) jbba, crunch" in text.getvalue()
    assert "no device can hold it" in text.getvalue()


def test_unknown_experiment_in_grid_override(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown experiment 'device'"):
        run_sweep("all", seeds=1, out_dir=tmp_path, settings=SETTINGS, grid_override={"device": [12]})


def test_sweep_imports_neither_torch_nor_ray():
    import subprocess
    import sys

    code = "import sys, deft_ray.experiments.sweep; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
