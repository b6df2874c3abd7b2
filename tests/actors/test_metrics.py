"""Ray dashboard metrics: a run on a local Ray with a metrics export port shows deft-ray's gauges
and counters, by name, in the Prometheus output."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from deft_ray.runner import run

#: Every metric the coordinator and the devices export, as Prometheus names them.
EXPORTED = ("ray_deft_ray_round_planned_latency_s", "ray_deft_ray_round_measured_latency_s",
            "ray_deft_ray_emulated_time_s", "ray_deft_ray_rounds_total", "ray_deft_ray_blocks_applied_total",
            "ray_deft_ray_device_compute_s", "ray_deft_ray_device_upload_s", "ray_deft_ray_device_uploads_total",
            "ray_deft_ray_device_measured_compute_s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def ray_with_metrics():
    ray = pytest.importorskip("ray")
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=port,
             _system_config={"metrics_report_interval_ms": 500})
    yield port
    ray.shutdown()


def scrape(port: int, names, timeout_s: float = 60.0) -> str:
    """The Prometheus text once it holds every name (metrics reach the exporter asynchronously)."""
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            text = ""
        if all(name in text for name in names):
            break
        time.sleep(1.0)
    return text


def test_round_and_device_metrics_reach_prometheus(tiny_bert, tmp_path, tiny_config, ray_with_metrics):
    config = tiny_config(tiny_bert, rounds=3, scheme="crunch")
    run(config, out_dir=tmp_path / "run", use_ray=True, quiet=True)
    text = scrape(ray_with_metrics, EXPORTED)
    missing = [name for name in EXPORTED if name not in text]
    assert not missing, f"not in the Prometheus output: {missing}"
    rounds = [line for line in text.splitlines() if line.startswith("ray_deft_ray_rounds_total{")]
    # the coordinator actor exits right after the last round, so its last report may not have been sent yet
    assert any('scheme="crunch"' in line and 1 <= float(line.rsplit(" ", 1)[1]) <= 3 for line in rounds), rounds
    assert 'device="fast-0"' in text
