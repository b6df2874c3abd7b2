"""Tests of the run plots, their edge cases, the comparison plot, and the ledger reader they draw from."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from deft_ray.experiments.plots import _natural_key, write_comparison_plot, write_run_plots
from deft_ray.runtime.ledger import read_ledger
from deft_ray.runtime.records import RoundRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ("latency.png", "metric.png", "devices.png")


def make_round(round_idx: int, *, devices: tuple[str, ...] = ("d0", "d2", "d10"), time_s: float = 0.0,
               evaluation: dict | None = None, events: list | None = None, **overrides) -> dict:
    """One ledger record shaped like a coordinator round; ``overrides`` replace top-level keys."""
    per_device = {name: {"blocks": [i], "bandwidth_hz": 4e6 + 1e6 * i, "compute_s": 0.5 + 0.3 * i,
                         "upload_s": 1.4 - 0.3 * i, "measured_compute_s": 0.1, "peak_memory_bytes": 1.2e8,
                         "loss": 0.7 - 0.02 * round_idx, "status": "applied"} for i, name in enumerate(devices)}
    latency_s = max(d["compute_s"] + d["upload_s"] for d in per_device.values())
    record = {"round": round_idx, "emulated_time_s": time_s + latency_s, "wall_s": 0.8,
              "plan": {"scheme": "jbba", "assignment": {n: d["blocks"] for n, d in per_device.items()},
                       "bandwidth_hz": {n: d["bandwidth_hz"] for n, d in per_device.items()},
                       "device_latency_s": {n: latency_s for n in per_device}, "round_latency_s": latency_s,
                       "solve_time_s": 0.004, "diagnostics": []},
              "planned_latency_s": latency_s, "measured_latency_s": latency_s * 1.02,
              "devices": per_device, "bottleneck_device": devices[0],
              "loss": 0.7 - 0.02 * round_idx, "evaluation": evaluation, "events": events or []}
    record.update(overrides)
    return record


def records_of(lines: list[dict]) -> list[RoundRecord]:
    return [RoundRecord.from_json(line) for line in lines]


def make_ledger(num_rounds: int = 10) -> list[dict]:
    """3 devices (d10 absent in rounds 4-6, d2 the bottleneck in round 5), an event in round 4,
    evaluation every 3 rounds."""
    records, time_s = [], 0.0
    for round_idx in range(1, num_rounds + 1):
        devices = ("d0", "d2") if 4 <= round_idx <= 6 else ("d0", "d2", "d10")
        events = [{"kind": "device_failed", "device": "d10", "detail": "actor died"}] if round_idx == 4 else []
        evaluation = {"accuracy": 0.5 + 0.04 * round_idx} if round_idx % 3 == 0 else None
        record = make_round(round_idx, devices=devices, time_s=time_s, evaluation=evaluation, events=events)
        if round_idx == 5:
            record["bottleneck_device"] = "d2"
        records.append(record)
        time_s = record["emulated_time_s"]
    return records


def assert_pngs(paths: list[Path], out_dir: Path) -> None:
    assert [p.name for p in paths] == list(NAMES)
    for path in paths:
        assert path.parent == out_dir and path.is_file()
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 10_000, f"{path.name} is suspiciously small"


def test_write_run_plots_writes_three_pngs(tmp_path):
    out_dir = tmp_path / "plots" / "run1"
    num_figures = len(plt.get_fignums())
    paths = write_run_plots(records_of(make_ledger()), out_dir, metric="accuracy")
    assert_pngs(paths, out_dir)
    assert len(plt.get_fignums()) == num_figures, "pyplot's global figure list must be untouched"


@pytest.mark.parametrize("case", ["single_round", "no_evaluation", "no_events_no_devices"])
def test_write_run_plots_edge_cases(tmp_path, case):
    records = make_ledger()
    if case == "single_round":
        records = [make_round(1, evaluation={"accuracy": 0.6}, events=[{"kind": "straggler", "device": "d0"}])]
    elif case == "no_evaluation":
        records = [{**r, "evaluation": None} for r in records]
    else:
        records = [{**r, "events": [], "devices": {}, "bottleneck_device": None} for r in records[:2]]
    assert_pngs(write_run_plots(records_of(records), tmp_path, metric="accuracy"), tmp_path)


def test_write_run_plots_rejects_empty_ledger_and_unknown_metric(tmp_path):
    with pytest.raises(ValueError, match="no rounds"):
        write_run_plots([], tmp_path, metric="accuracy")
    with pytest.raises(ValueError, match=r"'f1'.*metrics found: accuracy"):
        write_run_plots(records_of(make_ledger()), tmp_path, metric="f1")


def test_natural_device_order():
    assert sorted(["d10", "d2", "d1", "edge", "d0"], key=_natural_key) == ["d0", "d1", "d2", "d10", "edge"]


def test_write_comparison_plot(tmp_path):
    slower = [{**r, "emulated_time_s": 1.5 * r["emulated_time_s"]} for r in make_ledger()]
    runs = {"jbba": make_ledger(), "crunch": slower, "random": [{**r, "evaluation": None} for r in slower]}
    path = write_comparison_plot({label: records_of(lines) for label, lines in runs.items()}, tmp_path / "compare" / "time_to_accuracy.png", metric="accuracy")
    assert path == tmp_path / "compare" / "time_to_accuracy.png"
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="runs is empty"):
        write_comparison_plot({}, tmp_path / "empty.png", metric="accuracy")


def test_read_ledger_round_trip(tmp_path):
    records = make_ledger(4)
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records[:2]) + "\n\n  \n"
                    + "\n".join(json.dumps(r) for r in records[2:]) + "\n")
    assert read_ledger(path) == records_of(records)
    assert read_ledger(str(path)) == records_of(records)


@pytest.mark.parametrize("bad_line, message", [('{"round": 2, ', "not valid JSON"), ("[1, 2]", "holds a list")])
def test_read_ledger_malformed_line_names_its_number(tmp_path, bad_line, message):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(make_round(1)) + "\n\n" + bad_line + "\n")
    with pytest.raises(ValueError, match=rf"line 3 .*{message}"):
        read_ledger(path)


def test_read_ledger_skips_a_last_line_cut_off_by_a_crash(tmp_path):
    lines = make_ledger(3)
    path = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps(line) + "\n" for line in lines)
    path.write_text(text[:-40])
    assert read_ledger(path) == records_of(lines[:2])
