"""What ``deft-ray run`` prints when its output is not a terminal: whole round lines, ``--quiet``,
``--log-format json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from deft_ray.config import dump_config


def run_command(tmp_path, config, *options) -> subprocess.CompletedProcess:
    """``deft-ray run --local`` on ``config`` with stdout and stderr piped (not terminals)."""
    dump_config(config, tmp_path / "config.yaml")
    return subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--config", str(tmp_path / "config.yaml"),
                           "--local", "--out", str(tmp_path / "run"), *options],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": ""})


def test_round_lines_do_not_wrap_in_a_log(tiny_bert, tmp_path, tiny_config):
    result = run_command(tmp_path, tiny_config(tiny_bert, rounds=2, eval_every=1))
    assert result.returncode == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    opening, *rounds = lines[:lines.index("run summary")]  # nothing else: no continuation lines
    assert opening.startswith("deft-ray: 6 devices")
    assert [line.split()[:2] for line in rounds] == [["round", "1"], ["round", "2"]]
    for line in rounds:  # one line each, longer than 80 columns, the evaluation at its end
        assert len(line) > 80 and line.split()[-2:][0] == "accuracy"
    assert "\x1b[" not in result.stdout  # no terminal control codes in a log
    assert lines[-1].startswith("run directory: ") and lines[-1].endswith("/run")


def test_quiet_prints_only_the_summary(tiny_bert, tmp_path, tiny_config):
    result = run_command(tmp_path, tiny_config(tiny_bert, rounds=2), "--quiet")
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith(("round ", "deft-ray:")) for line in result.stdout.splitlines())
    assert "run summary" in result.stdout and "run directory: " in result.stdout


def test_json_log_format_is_one_object_per_round_then_the_summary(tiny_bert, tmp_path, tiny_config):
    result = run_command(tmp_path, tiny_config(tiny_bert, rounds=2), "--log-format", "json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]  # every line is JSON
    ledger = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert objects[:-1] == ledger
    assert objects[-1]["summary"] == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert objects[-1]["run_directory"].endswith("/run")
    assert result.stderr.startswith("deft-ray: 6 devices, scheme jbba")
