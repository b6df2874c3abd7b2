"""Runs that survive their users: each habit driven through the command line, as a user would.

Signals go to the real process, permissions are real (a run as root drops the capability that
overrides them), and every test checks the run directory afterwards: every ledger line whole,
rounds contiguous, no temporary files, the checkpoint resumable.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

DROP_OVERRIDE = (["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else [])
"""As root, permission bits bind only without CAP_DAC_OVERRIDE: the driver runs without it."""


@pytest.fixture
def job(tiny_bert, tmp_path):
    """``job(**overrides)``: a YAML config of a short run of the tiny model, and its path."""
    def write(**overrides) -> Path:
        data = {"rounds": 4, "eval_every": 2, "seed": 1,
                "model": {"name_or_path": tiny_bert, "max_length": 24},
                "data": {"max_train_examples": 240, "max_eval_examples": 32, "batch_size": 8},
                "reliability": {"checkpoint_every": 2},
                "devices": [{"name": "fast", "count": 3, "memory_fraction": 1.2},
                            {"name": "slow", "count": 3, "compute_scale": 4.0, "memory_fraction": 0.5}]}
        for key, value in overrides.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
        path = tmp_path / f"job-{len(list(tmp_path.glob('job-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path
    return write


def deft_ray(*args: str, privileged: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    prefix = [] if privileged else DROP_OVERRIDE
    return subprocess.run([*prefix, sys.executable, "-m", "deft_ray.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RAY_ADDRESS": ""})


def start(*args: str, privileged: bool = True) -> subprocess.Popen:
    prefix = [] if privileged else DROP_OVERRIDE
    return subprocess.Popen([*prefix, sys.executable, "-m", "deft_ray.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_ADDRESS": ""})


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def ledger_lines(out: Path) -> list[dict]:
    text = (out / "metrics.jsonl").read_text()
    assert not text or text.endswith("\n"), "the ledger's last line is cut off"
    return [json.loads(line) for line in text.splitlines()]


def check_directory(out: Path) -> list[dict]:
    """Whole, contiguous ledger lines and no temporary files."""
    lines = ledger_lines(out)
    assert [line["round"] for line in lines] == list(range(1, len(lines) + 1))
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name == ".lock"]
    assert not leftovers, leftovers
    return lines


def wait_for_rounds(process: subprocess.Popen, out: Path, rounds: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not (out / "metrics.jsonl").is_file() or len((out / "metrics.jsonl").read_text().splitlines()) < rounds:
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


# ------------------------------------------------------------------------------ the run directory
def test_a_reused_out_is_refused_and_left_as_it_was(job, tmp_path):
    out = tmp_path / "run"
    config = job(rounds=2)
    assert deft_ray("run", "--config", str(config), "--out", str(out), "--local").returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = deft_ray("run", "--config", str(config), "--out", str(out), "--local")
    assert again.returncode == 2
    assert f"--out = '{out}': holds a run already; resume it with `deft-ray run --resume {out}`" in one_line(again)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    replaced = deft_ray("run", "--config", str(job(rounds=1)), "--out", str(out), "--local", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert len(check_directory(out)) == 1 and sorted(p.name for p in (out / "checkpoints").iterdir()) == ["round-000001.ckpt"]


def test_two_runs_cannot_write_one_directory_and_a_crashed_lock_does_not_stick(job, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # another run holds the directory
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = deft_ray("run", "--config", str(job(rounds=1)), "--out", str(out), "--local")
    assert busy.returncode == 2 and "is in use by another deft-ray run" in one_line(busy)
    assert not (out / "metrics.jsonl").exists()
    # the lock file of a run that died is still there, but nothing holds it
    done = deft_ray("run", "--config", str(job(rounds=1)), "--out", str(out), "--local")
    assert done.returncode == 0, done.stderr[-2000:]
    check_directory(out)


# ------------------------------------------------------------------------------ interrupts
@pytest.mark.parametrize("where, signum", [("local", signal.SIGINT), ("ray", signal.SIGTERM)])
def test_an_interrupt_keeps_the_progress_and_says_how_to_resume(job, tmp_path, where, signum):
    out = tmp_path / "run"
    config = job(rounds=40, eval_every=100, reliability={"checkpoint_every": 0})
    local = ["--local"] if where == "local" else []
    process = start("run", "--config", str(config), "--out", str(out), *local)
    wait_for_rounds(process, out, 2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if line.startswith("deft-ray")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    done = len(check_directory(out))
    assert 2 <= done < 40
    assert f"after round {done}" in lines[0] and f"deft-ray run --resume {out}" in lines[0]
    assert (out / "checkpoints" / f"round-{done:06d}.ckpt").is_file()
    resumed = deft_ray("run", "--resume", str(out), "--rounds", str(done + 2), *local)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(check_directory(out)) == done + 2
    assert yaml.safe_load((out / "config.yaml").read_text())["rounds"] == done + 2


def test_a_second_interrupt_stops_at_once(job, tmp_path):
    out = tmp_path / "run"
    slow_rounds = job(rounds=400, eval_every=1000, clock="realtime", network={"bandwidth_hz": 2e4})
    process = start("run", "--config", str(slow_rounds), "--out", str(out), "--local")
    wait_for_rounds(process, out, 1)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)  # a person's second Ctrl-C; two at once reach Python as one
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "stopped at once" in stderr and "Traceback" not in stderr, stderr[-3000:]
    check_directory(out)


# ------------------------------------------------------------------------------ disk errors
def test_an_unwritable_out_is_one_line(job, tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    result = deft_ray("run", "--config", str(job()), "--out", str(parent / "run"), "--local", privileged=False)
    assert result.returncode == 2
    assert f"--out = '{parent / 'run'}': cannot be written (Permission denied)" in one_line(result)


def test_an_unwritable_checkpoint_folder_is_a_warning_and_the_run_goes_on(job, tmp_path):
    out = tmp_path / "run"
    process = start("run", "--config", str(job(rounds=6, reliability={"checkpoint_every": 1})), "--out", str(out),
                    "--local", privileged=False)
    wait_for_rounds(process, out, 1)
    (out / "checkpoints").chmod(0o555)
    _, stderr = process.communicate(timeout=300)
    (out / "checkpoints").chmod(0o755)
    assert process.returncode == 0, stderr[-3000:]
    assert "warning: the checkpoint of round" in stderr and "Traceback" not in stderr
    lines = check_directory(out)
    failed = [e for line in lines for e in line["events"] if e["kind"] == "checkpoint_failed"]
    assert failed and "Permission denied" in failed[0]["error"]
    assert (out / "summary.json").is_file() and (out / "adapter" / "adapter_config.json").is_file()


def test_an_unwritable_ledger_stops_the_run_naming_the_last_good_checkpoint(job, tmp_path):
    out = tmp_path / "run"
    process = start("run", "--config", str(job(rounds=40, eval_every=100, reliability={"checkpoint_every": 1})),
                    "--out", str(out), "--local", privileged=False)
    wait_for_rounds(process, out, 2)
    (out / "metrics.jsonl").chmod(0o444)
    _, stderr = process.communicate(timeout=300)
    (out / "metrics.jsonl").chmod(0o644)
    assert process.returncode == 1
    line = [line for line in stderr.strip().splitlines() if line.startswith("deft-ray")]
    assert len(line) == 1 and "Traceback" not in stderr, stderr[-3000:]
    done = len(check_directory(out))
    assert "cannot be written" in line[0] and f"round-{done:06d}.ckpt" in line[0] and "--resume" in line[0]
    resumed = deft_ray("run", "--resume", str(out), "--rounds", str(done + 1), "--local")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


# ------------------------------------------------------------------------------ resume
def test_a_refused_resume_changes_nothing(job, tmp_path):
    out = tmp_path / "run"
    assert deft_ray("run", "--config", str(job(rounds=4)), "--out", str(out), "--local").returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fewer = deft_ray("run", "--resume", str(out), "--rounds", "2", "--local")
    assert fewer.returncode == 2
    assert "rounds = 2: is fewer than the 4 rounds the run has done" in one_line(fewer)
    (out / "checkpoints" / "round-000004.ckpt").write_bytes(b"garbage")
    before[out / "checkpoints" / "round-000004.ckpt"] = b"garbage"
    corrupt = deft_ray("run", "--resume", str(out), "--rounds", "6", "--local")
    assert corrupt.returncode == 2 and "round-000004.ckpt" in one_line(corrupt)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------ values that cannot work
@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "seed = -1: must not be negative"),
    (["--set", "data.batch_size=100000"], "data.batch_size = 100000: is larger than the smallest device's share"),
    (["--set", "target_metric=2.0"], "target_metric = 2.0: accuracy lies in [0, 1]"),
    (["--set", "data.max_train_examples=4"], "devices = 6: there are more devices than the 4 training examples"),
])
def test_values_that_can_only_stall_or_mislead_are_refused_before_ray_starts(job, tmp_path, args, message):
    result = deft_ray("run", "--config", str(job()), "--out", str(tmp_path / "run"), *args)
    assert result.returncode == 2
    assert message in one_line(result)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ divergence
def test_divergence_stops_with_a_checkpoint_of_the_last_finite_round(job, tmp_path):
    out = tmp_path / "run"
    result = deft_ray("run", "--config", str(job(rounds=30, optimizer={"lr": 1000.0},
                                                 reliability={"checkpoint_every": 0})),
                      "--out", str(out), "--local")
    assert result.returncode == 1
    line = one_line(result)
    done = len(check_directory(out))
    assert f"round {done + 1}:" in line and "optimizer.lr" in line and "lower" in line
    assert f"round-{done:06d}.ckpt" in line and (out / "checkpoints" / f"round-{done:06d}.ckpt").is_file()
    assert all(isinstance(l["loss"], float) and l["loss"] < 1e6 for l in ledger_lines(out))

