"""Tests of reading run directories back: ``deft-ray show`` and ``deft-ray compare``."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deft_ray.cli import main
from deft_ray.config import RunConfig, dump_config
from tests.test_plots import PNG_MAGIC, make_ledger, make_round


def write_run(root: Path, lines: list[dict], *, scheme: str = "jbba", summary: dict | None = None,
              stop: dict | None = None) -> Path:
    """A run directory as ``deft-ray run`` leaves it: config, ledger, optional summary and stop file."""
    root.mkdir(parents=True)
    dump_config(dataclasses.replace(RunConfig(), scheme=scheme), root / "config.yaml")
    (root / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    if stop is not None:
        (root / "stop.json").write_text(json.dumps(stop))
    (root / "checkpoints").mkdir()
    for round_idx in (2, 10):
        (root / "checkpoints" / f"round-{round_idx}.ckpt").write_bytes(b"x")
    return root


def slower(lines: list[dict], factor: float) -> list[dict]:
    """The same rounds with every latency and time scaled by ``factor``, and no events."""
    return [{**line, "planned_latency_s": line["planned_latency_s"] * factor,
             "measured_latency_s": line["measured_latency_s"] * factor,
             "emulated_time_s": line["emulated_time_s"] * factor, "events": []} for line in lines]


def test_compare_writes_one_table_and_overlaid_plots(tmp_path, capsys):
    fast = make_ledger(10)
    slow = slower(fast, 2.0)[:6]  # stopped after 6 rounds
    a = write_run(tmp_path / "a", fast, summary={"rounds": 10, "energy_j": 12.5})
    b = write_run(tmp_path / "b", slow, scheme="crunch", stop={"round": 7, "reason": "diverged", "events": []})
    code = main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert code == 0
    assert "jbba" in out and "crunch" in out and "stopped in round 7: diverged" in out
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [row["scheme"] for row in rows] == ["jbba", "crunch"]
    by_hand = [  # from the ledger lines themselves
        {"rounds": "10", "devices": "12", "events": "1", "energy_j": "12.5", "best_metric": 0.5 + 0.04 * 9,
         "emulated_time_s": fast[-1]["emulated_time_s"],
         "planned": sum(l["planned_latency_s"] for l in fast) / 10,
         "measured": sum(l["measured_latency_s"] for l in fast) / 10},
        {"rounds": "6", "devices": "12", "events": "0", "energy_j": "", "best_metric": 0.5 + 0.04 * 6,
         "emulated_time_s": slow[-1]["emulated_time_s"],
         "planned": sum(l["planned_latency_s"] for l in slow) / 6,
         "measured": sum(l["measured_latency_s"] for l in slow) / 6}]
    for row, expected in zip(rows, by_hand):
        assert {k: row[k] for k in ("rounds", "devices", "events", "energy_j")} == \
            {k: expected[k] for k in ("rounds", "devices", "events", "energy_j")}
        assert float(row["best_metric"]) == pytest.approx(expected["best_metric"])
        assert float(row["emulated_time_s"]) == pytest.approx(expected["emulated_time_s"])
        assert float(row["mean_planned_latency_s"]) == pytest.approx(expected["planned"])
        assert float(row["mean_measured_latency_s"]) == pytest.approx(expected["measured"])
        assert row["metric"] == "accuracy"
    for name in ("latency.png", "metric.png"):
        assert (tmp_path / "cmp" / name).read_bytes()[:8] == PNG_MAGIC


def test_compare_labels_runs_of_one_scheme_by_folder(tmp_path, capsys):
    a = write_run(tmp_path / "first", make_ledger(3))
    b = write_run(tmp_path / "second", make_ledger(3))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "jbba (first)" in out and "jbba (second)" in out


def test_show_prints_the_summary_and_where_the_files_are(tmp_path, capsys):
    root = write_run(tmp_path / "run", make_ledger(10), summary={"scheme": "jbba", "rounds": 10, "best_accuracy": 0.86})
    (root / "plots").mkdir()
    (root / "plots" / "latency.png").write_bytes(PNG_MAGIC)
    assert main(["show", str(root)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "best_accuracy" in out and "0.86" in out
    assert str(root / "checkpoints" / "round-10.ckpt") in out  # the latest, not round-2
    assert str(root / "plots" / "latency.png") in out and str(root / "metrics.jsonl") in out


def test_show_summarises_an_unfinished_run_from_its_ledger(tmp_path, capsys):
    root = write_run(tmp_path / "run", [make_round(1), make_round(2)])
    assert main(["show", str(root)]) == 0
    out = capsys.readouterr().out
    assert "unfinished" in out and "final_loss" in out and "0.66" in out  # round 2's loss, 0.7 - 0.04


@pytest.mark.parametrize("argv, message", [
    (["show", "{tmp}/nothing"], "RUN_DIR = '{tmp}/nothing': is not a run directory (no config.yaml and metrics.jsonl); "
                                    "give a folder `deft-ray run` wrote"),
    (["compare", "{run}", "--metric", "f1", "--out", "{tmp}/cmp"], "--metric = 'f1': no run reports it; "
                                                                     "give one the runs report (accuracy)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
    run_dir = write_run(tmp_path / "run", make_ledger(3))
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in argv]
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"deft-ray: error: {message.format(tmp=tmp_path)}"


def test_show_sums_an_unfinished_runs_energy_from_its_ledger(tmp_path, capsys):
    root = write_run(tmp_path / "run", [{**make_round(1), "energy_j": 1.25}, {**make_round(2), "energy_j": 2.5}])
    assert main(["show", str(root)]) == 0
    out = capsys.readouterr().out
    assert "energy_j" in out and "3.75" in out
    old = write_run(tmp_path / "old", [make_round(1)])  # a ledger from before energy was accounted
    assert main(["show", str(old)]) == 0
    assert "energy_j" in capsys.readouterr().out
