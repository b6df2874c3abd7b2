"""`ray job submit` against a real Ray head started on loopback, stopped by its own process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port_block(size: int = 220) -> int:
    """The first of ``size`` consecutive loopback ports that are all free (outside Ray's defaults)."""
    for base in range(21000, 60000, size):
        try:
            sockets = []
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no block of free ports")


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head of its own (free ports, no auth on loopback; ``ray job stop`` waits 120 s before
    SIGKILL), stopped by SIGTERM to its process."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_JOB_STOP_WAIT_TIME_S": "120"}
    short_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    base = free_port_block()
    dashboard = base + 1
    command = [RAY, "start", "--head", "--block", f"--port={base}", f"--dashboard-port={dashboard}",
               "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", "--num-cpus=2",
               f"--ray-client-server-port={base + 2}", f"--dashboard-agent-listen-port={base + 3}",
               f"--dashboard-agent-grpc-port={base + 4}", f"--metrics-export-port={base + 5}",
               f"--runtime-env-agent-port={base + 6}", f"--node-manager-port={base + 7}",
               f"--object-manager-port={base + 8}", f"--min-worker-port={base + 20}",
               f"--max-worker-port={base + 219}", f"--temp-dir={short_dir}"]
    head = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while time.time() < deadline:
        probe = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, timeout=60)
        if probe.returncode == 0:
            break
        assert head.poll() is None, "ray start --head exited"
        time.sleep(2)
    else:
        pytest.fail("the Ray head's job server did not come up within 120 s")
    yield address, env
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    shutil.rmtree(short_dir, ignore_errors=True)


def test_job_submit_runs_a_short_job_and_writes_the_run_directory(tiny_bert, tmp_path, ray_head):
    address, env = ray_head
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "rounds": 2, "eval_every": 2, "storage_path": str(tmp_path / "results"),
        "model": {"name_or_path": tiny_bert, "max_length": 24},
        "data": {"max_train_examples": 300, "max_eval_examples": 64, "batch_size": 8},
        "devices": [{"name": "edge", "count": 5, "memory_fraction": 1.2}]}))
    excludes = json.dumps({"excludes": [".git", ".venv", "runs", "docs", "*.egg-info"]})
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--runtime-env-json", excludes,
         "--", sys.executable, "jobs/finetune.py", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=900)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "succeeded" in submitted.stdout.lower()
    runs = list((tmp_path / "results").iterdir())
    assert len(runs) == 1 and f"run directory: {runs[0]}" in submitted.stdout.replace("\n", "")
    records = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and (runs[0] / "adapter" / "adapter_config.json").is_file()


def test_ray_job_stop_keeps_the_progress(tiny_bert, tmp_path, ray_head):
    """`ray job stop` sends the driver SIGTERM: the run checkpoints its last round and says how to resume."""
    address, env = ray_head
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "rounds": 400, "eval_every": 1000, "storage_path": str(tmp_path / "results"),
        "reliability": {"checkpoint_every": 0},
        "model": {"name_or_path": tiny_bert, "max_length": 24},
        "data": {"max_train_examples": 300, "max_eval_examples": 64, "batch_size": 8},
        "devices": [{"name": "edge", "count": 5, "memory_fraction": 1.2}]}))
    excludes = json.dumps({"excludes": [".git", ".venv", "runs", "docs", "*.egg-info"]})
    submitted = subprocess.run(
        [RAY, "job", "submit", "--no-wait", "--submission-id", "deft-stop", "--address", address, "--working-dir",
         str(REPO), "--runtime-env-json", excludes, "--", sys.executable, "jobs/finetune.py", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    deadline = time.time() + 600
    while not list((tmp_path / "results").glob("*/metrics.jsonl")) or len(
            next((tmp_path / "results").glob("*/metrics.jsonl")).read_text().splitlines()) < 2:
        assert time.time() < deadline, "the job made no progress"
        time.sleep(0.5)
    stopped = subprocess.run([RAY, "job", "stop", "--address", address, "deft-stop"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert stopped.returncode == 0, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    run_dir = next((tmp_path / "results").iterdir())
    text = (run_dir / "metrics.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert text.endswith("\n") and [line["round"] for line in lines] == list(range(1, len(lines) + 1))
    assert (run_dir / "checkpoints" / f"round-{len(lines):06d}.ckpt").is_file()
    logs = subprocess.run([RAY, "job", "logs", "--address", address, "deft-stop"], env=env, capture_output=True,
                          text=True, timeout=120).stdout
    assert f"SIGTERM: stopped after round {len(lines)}" in logs and f"--resume {run_dir}" in logs.replace("\n", "")
