import json
import subprocess
import sys
from pathlib import Path

import pytest

from deft_ray.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "instances"


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plan_json_is_exactly_the_plan(capsys):
    code, out, err = run_cli(capsys, "plan", "--instance", str(EXAMPLES / "small.json"), "--scheme", "crunch", "--json")
    assert code == 0 and err == ""
    plan = json.loads(out)
    assert set(plan) == {"scheme", "assignment", "bandwidth_hz", "device_latency_s", "round_latency_s",
                         "solve_time_s", "diagnostics", "device_energy_j"}
    assert plan["scheme"] == "crunch"


def test_plan_all_json_is_a_list_of_every_scheme(capsys):
    code, out, _ = run_cli(capsys, "plan", "--instance", str(EXAMPLES / "small.json"), "--scheme", "all", "--json")
    plans = json.loads(out)
    assert code == 0 and isinstance(plans, list)
    assert {p["scheme"] for p in plans} >= {"jbba", "crunch", "exact", "single-device", "random"}


def test_plan_all_table_compares_and_skips_what_cannot_run(capsys):
    code, out, _ = run_cli(capsys, "plan", "--instance", str(EXAMPLES / "roberta-base-20dev.json"), "--scheme", "all")
    assert code == 0
    assert "schemes compared" in out and "bottleneck" in out and "1.000x" in out
    assert "skipped optimal-sets" in out  # 20 devices, 12 blocks: too many assignments to enumerate


@pytest.mark.parametrize("content, argv, message", [
    ("missing", [], "--instance = '{path}': no such file"),
    ("{", [], "not valid JSON"),
    ('{"bandwidth_hz": 0, "blocks": [], "devices": []}', [], "bandwidth_hz = 0: must be positive"),
    ("example", ["--scheme", "fastest"], "unknown scheme 'fastest'; valid schemes: crunch, jbba"),
    ('{"bandwidth_hz": 1e6, "blocks": [{"compute_s": 1, "memory_bytes": 1, "payload_bits": 1},'
     '{"compute_s": 1, "memory_bytes": 1, "payload_bits": 1}], "devices": [{"name": "a", "compute_scale": 1,'
     '"memory_bytes": 9, "spectral_efficiency": 1}]}', [], "1 devices for 2 blocks"),
    ('{"bandwidth_hz": 1e6, "blocks": [{"compute_s": 1, "memory_bytes": 5e9, "payload_bits": 1}],'
     '"devices": [{"name": "a", "compute_scale": 1, "memory_bytes": 2e9, "spectral_efficiency": 1}]}', [],
     "blocks[0].memory_bytes = 5e+09: no device can hold it; the largest budget is 2e+09"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, content, argv, message):
    path = EXAMPLES / "small.json" if content == "example" else tmp_path / "instance.json"
    if content not in ("example", "missing"):
        path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "plan", "--instance", str(path), *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert message.format(path=path) in lines[0]


@pytest.mark.parametrize("content, message", [
    (b'{"bandwidth_hz": ' + b"9" * 400 + b"}", "bandwidth_hz"),
    (b"[" * 200_000, "nests arrays or objects too deeply"),
    (b'{"bandwidth_hz": NaN, "blocks": [], "devices": []}', "is not a finite number"),
    (b'{"bandwidth_hz": 1e400, "blocks": [], "devices": []}', "bandwidth_hz"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
])
def test_malformed_files_exit_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "instance.json"
    path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "plan", "--instance", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and message in lines[0], lines


def test_usage_errors_exit_2_on_one_line():
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "plan"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--instance" in result.stderr


def test_cli_and_planners_do_not_import_torch_or_ray():
    code = ("import sys, deft_ray.cli, deft_ray.planners, deft_ray.experiments.plan_report; "
            "from deft_ray.cli import main; "
            "print(sorted(m for m in ('torch', 'ray', 'transformers', 'cvxpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_profile_writes_a_profile_that_plan_accepts(tiny_bert, tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", "--model", tiny_bert, "--batch", "2", "--seq", "16", "--repeats", "1",
                 "--out", str(out)]) == 0
    profile = json.loads(out.read_text())
    assert {"model", "measured_on", "torch", "batch", "seq", "dtype", "blocks", "raw_compute_s"} <= set(profile)
    blocks = profile["blocks"]
    assert len(blocks) == 4 and set(blocks[0]) == {"compute_s", "memory_bytes", "payload_bits"}
    assert all(a["compute_s"] >= b["compute_s"] and a["memory_bytes"] > b["memory_bytes"]
               for a, b in zip(blocks, blocks[1:]))
    capsys.readouterr()
    code, output, _ = run_cli(capsys, "plan", "--profile", str(out), "--devices", "6", "--scheme", "jbba", "--json")
    assert code == 0 and sorted(b for bs in json.loads(output)["assignment"].values() for b in bs) == [0, 1, 2, 3]


def test_plan_from_a_packaged_profile(capsys):
    code, output, _ = run_cli(capsys, "plan", "--profile", "roberta-large_h200_fp32", "--devices", "30", "--json")
    assert code == 0 and len(json.loads(output)["assignment"]) == 24


def test_sweep_command_writes_csv_and_png(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "sweep", "--experiment", "bandwidth",
                             "--seeds", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "bandwidth.csv").read_text().splitlines()[0]
    assert header == "experiment,x,scheme,seed,round_latency_s,solve_time_s"
    assert (tmp_path / "bandwidth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_rejects_unknown_experiments():
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "sweep", "--experiment", "speed"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown experiment 'speed'; valid experiments: devices" in result.stderr


def test_plan_with_a_bad_profile_exits_2_naming_the_field(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"blocks": [{"compute_s": -1, "memory_bytes": 1e8, "payload_bits": 1e5}]}))
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "plan", "--profile", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"profile {path}: blocks[0].compute_s = -1: must be positive" in result.stderr
