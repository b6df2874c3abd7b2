"""Fault injection: devices that die or raise mid-round, stragglers, checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deft_ray.runtime.coordinator import CoverageError
from deft_ray.actors.device import Device
from deft_ray.actors.launch import build_local
from deft_ray.runtime.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from deft_ray.runtime.ledger import RunDirectory, seeded_fields as deterministic

NUM_BLOCKS = 4


def ledger(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def adapter_state(coordinator) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in coordinator.model.trainable_state().items()}


class Failing:
    """Wraps a device: raises in the given round, or reports a slow compute (a straggler)."""

    def __init__(self, device, *, raise_in_round: int | None = None, slow_in_round: int | None = None):
        self.device, self.spec = device, device.spec
        self.raise_in_round, self.slow_in_round = raise_in_round, slow_in_round

    def train(self, order, adapter):
        if order.round_idx == self.raise_in_round:
            raise RuntimeError("injected fault")
        upload = self.device.train(order, adapter)
        if order.round_idx == self.slow_in_round:
            import dataclasses
            upload = dataclasses.replace(upload, compute_s=upload.compute_s * 50)
        return upload

    def __getattr__(self, name):
        return getattr(self.device, name)


def planned_devices(coordinator, round_idx: int) -> list[str]:
    """The devices the planner gives work in ``round_idx`` (no fading: every round plans alike)."""
    assert not coordinator.config.network.rayleigh_fading
    plan = coordinator.planner.plan(coordinator.instance_for_round(), round_idx)
    return sorted(plan.assignment, key=plan.device_latency_s.get, reverse=True)


def check_every_block_once(records: list[dict]) -> None:
    for record in records:
        applied = [b for d in record["devices"].values() if d["status"] == "applied" for b in d["blocks"]]
        applied += [b for phase in record["recovery"] for d in phase["devices"].values()
                    if d["status"] == "applied" for b in d["blocks"]]
        assert sorted(applied) == list(range(NUM_BLOCKS)), record["round"]
        assert record["blocks_applied"] == NUM_BLOCKS


# ------------------------------------------------------------------------------ failures in-process
def test_device_raising_mid_round_is_replanned_and_dropped(tiny_bert, tmp_path, tiny_config):
    config = tiny_config(tiny_bert, rounds=4, reliability={"checkpoint_every": 0})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    victim = planned_devices(coordinator, 2)[-1]
    coordinator.pool.devices[victim] = Failing(coordinator.pool.devices[victim], raise_in_round=2)
    list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    failed = [e for r in records for e in r["events"] if e["kind"] == "device_failed"]
    assert len(failed) == 1 and failed[0]["device"] == victim and "injected fault" in failed[0]["error"]
    assert records[1]["devices"][victim]["status"] == "failed" and records[1]["recovery"]
    assert victim not in records[1]["recovery"][0]["devices"]
    assert any(e["kind"] == "device_removed" for e in records[1]["events"])
    assert all(victim not in r["plan"]["assignment"] for r in records[2:])
    assert records[1]["measured_latency_s"] > records[1]["planned_latency_s"]  # recovery took time
    assert victim not in {s.name for s in coordinator.specs} and len(coordinator.specs) == 5


def test_straggler_blocks_are_recomputed_elsewhere(tiny_bert, tmp_path, tiny_config):
    config = tiny_config(tiny_bert, rounds=2, reliability={"checkpoint_every": 0, "straggler_deadline": 1.5})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    straggler = planned_devices(coordinator, 2)[0]
    coordinator.pool.devices[straggler] = Failing(coordinator.pool.devices[straggler], slow_in_round=2)
    list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    late = [e for e in records[1]["events"] if e["kind"] == "straggler"]
    assert [e["device"] for e in late] == [straggler] and not records[0]["recovery"]
    assert records[1]["devices"][straggler]["status"] == "late"
    assert straggler not in records[1]["recovery"][0]["devices"]  # recomputed on another device
    deadline = 1.5 * records[1]["planned_latency_s"]
    assert records[1]["measured_latency_s"] == pytest.approx(deadline + records[1]["recovery"][0]["plan"]["round_latency_s"])
    assert len(coordinator.specs) == 6  # a straggler stays in the run


def test_too_few_survivors_stop_with_a_checkpoint(tiny_bert, tmp_path, tiny_config):
    # 5 devices for 4 blocks under a one-block scheme: two failures leave 3 < 4.
    config = tiny_config(tiny_bert, rounds=5, reliability={"checkpoint_every": 0},
                         devices=[{"name": "d", "count": 5, "memory_fraction": 1.2}])
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    names = list(coordinator.pool.devices)
    for name in names:
        coordinator.pool.devices[name] = Failing(coordinator.pool.devices[name], raise_in_round=3)
    with pytest.raises(CoverageError, match=r"cannot cover .*stopped after round 2; checkpoint .*round-000002.ckpt"):
        list(coordinator.run())
    path = latest_checkpoint(tmp_path / "run" / "checkpoints")
    checkpoint = load_checkpoint(path)
    assert checkpoint.round_idx == 2 and len(ledger(tmp_path / "run")) == 2
    assert set(checkpoint.live_devices) == set(names)  # as the devices were when round 3 began
    stop = json.loads((tmp_path / "run" / "stop.json").read_text())
    assert stop["round"] == 3 and "cannot cover" in stop["reason"]
    assert sum(e["kind"] == "device_failed" for e in stop["events"]) >= 2


# ------------------------------------------------------------------------------ checkpoints
def fixed_profile(folder: Path) -> str:
    """A 4-block profile file, so that separate runs plan alike (a measured one differs)."""
    blocks = [{"compute_s": 0.4 - 0.05 * n, "memory_bytes": 8e8 - 1.5e8 * n, "payload_bits": 2.5e5}
              for n in range(NUM_BLOCKS)]
    path = folder / "profile.json"
    path.write_text(json.dumps({"blocks": blocks}))
    return str(path)


def test_resumed_run_matches_the_uninterrupted_one(tiny_bert, tmp_path, tiny_config):
    config = tiny_config(tiny_bert, rounds=6, eval_every=2, profile=fixed_profile(tmp_path),
                         reliability={"checkpoint_every": 2}, network={"rayleigh_fading": True},
                         optimizer={"schedule": "cosine", "warmup_rounds": 1, "lr": 0.01})
    whole = build_local(config, RunDirectory(tmp_path / "whole"))
    list(whole.run())
    assert whole.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
    cut = build_local(config, RunDirectory(tmp_path / "cut"))
    for _ in zip(range(5), cut.run()):  # rounds 1-5, checkpoints after 2 and 4, then "crash"
        pass
    resumed = build_local(config, RunDirectory(tmp_path / "cut"), resume=True)
    assert resumed.next_round == 5
    list(resumed.run())
    for name, value in adapter_state(whole).items():
        np.testing.assert_allclose(adapter_state(resumed)[name], value, atol=1e-5, rtol=0)
    assert [deterministic(r) for r in ledger(tmp_path / "cut")] == [deterministic(r) for r in ledger(tmp_path / "whole")]
    assert [e["kind"] for e in ledger(tmp_path / "cut")[4]["events"]].count("resumed") == 1
    assert (tmp_path / "cut" / "metrics.discarded.jsonl").read_text().count("\n") == 1  # round 5, redone


def test_corrupt_checkpoint_is_refused_and_kept(tiny_bert, tmp_path, tiny_config):
    config = tiny_config(tiny_bert, rounds=2, reliability={"checkpoint_every": 1})
    list(build_local(config, RunDirectory(tmp_path / "run")).run())
    path = latest_checkpoint(tmp_path / "run" / "checkpoints")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"round-000002.ckpt is corrupt: .*kept as is"):
        build_local(config, RunDirectory(tmp_path / "run"), resume=True)
    assert path.read_bytes() == bytes(data)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a 'deft-ray-checkpoint 1' file"):
        load_checkpoint(path)


def test_incompatible_checkpoint_names_the_field(tiny_bert, tmp_path, tiny_config):
    from deft_ray.runtime.checkpoint import check_compatible
    from deft_ray.config import to_dict

    config = tiny_config(tiny_bert, rounds=1, reliability={"checkpoint_every": 1})
    list(build_local(config, RunDirectory(tmp_path / "run")).run())
    path = latest_checkpoint(tmp_path / "run" / "checkpoints")
    other = to_dict(config)
    other["optimizer"]["lr"] = 0.5
    with pytest.raises(CheckpointError, match=r"another config: optimizer.lr \(0.002 in the checkpoint, now 0.5\)"):
        check_compatible(load_checkpoint(path), other, path)
    longer = to_dict(config) | {"rounds": 9}
    check_compatible(load_checkpoint(path), longer, path)  # more rounds is fine


def test_checkpoints_are_never_overwritten(tmp_path):
    from deft_ray.runtime.checkpoint import Checkpoint, save_checkpoint

    checkpoint = Checkpoint(round_idx=3, adapter={}, optimizer={}, coordinator_rng={}, device_streams={},
                            server_stream=None, emulated_time_s=0.0, live_devices=(), ledger_bytes=0, config={})
    path = save_checkpoint(tmp_path, checkpoint)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="already exists and is never overwritten"):
        save_checkpoint(tmp_path, checkpoint)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# ------------------------------------------------------------------------------ planner warnings
def test_planner_warnings_become_ledger_events(tiny_bert, tmp_path, tiny_config):
    import warnings

    from deft_ray.actors.launch import build_local
    from deft_ray.actors.planner import Planner
    from deft_ray.planners.jbba import Jbba
    from deft_ray.runtime.ledger import RunDirectory

    class WarningJbba(Jbba):
        """JBBA that also warns, as a solver does when it stops short of its tolerance."""

        def allocate(self, instance, *, seed):
            warnings.warn("dual ascent stopped after its iteration limit", RuntimeWarning, stacklevel=2)
            return super().allocate(instance, seed=seed)

    coordinator = build_local(tiny_config(tiny_bert, rounds=2, reliability={"checkpoint_every": 0}),
                              RunDirectory(tmp_path / "run"))
    coordinator.planner = Planner(WarningJbba(), seed=0)
    list(coordinator.run())
    for line in ledger(tmp_path / "run"):
        warned = [e for e in line["events"] if e["kind"] == "planner_warning"]
        assert [e["detail"] for e in warned] == ["RuntimeWarning: dual ascent stopped after its iteration limit"]


# ------------------------------------------------------------------------------ on Ray
def test_ray_kill_of_a_device_during_a_round(tiny_bert, tmp_path, ray_local, tiny_config):
    """A device actor killed while it computes: its blocks are re-planned in the same round."""
    from deft_ray.actors.launch import build_ray

    config = tiny_config(tiny_bert, rounds=3, clock="realtime", time_scale=40.0, reliability={"checkpoint_every": 0})
    coordinator = build_ray(config, RunDirectory(tmp_path / "run"))
    rounds = coordinator.run()
    next(rounds)
    plan = coordinator.planner.plan(coordinator.instance_for_round(), 2)  # no fading: round 2 plans alike
    victim = max(plan.device_latency_s, key=plan.device_latency_s.get)
    timer = threading.Timer(0.3 * plan.round_latency_s * config.time_scale, ray_local.kill,
                            args=(coordinator.pool.handles[victim],))
    timer.start()
    list(rounds)
    timer.join()
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    failed = [e for e in records[1]["events"] if e["kind"] == "device_failed"]
    assert [e["device"] for e in failed] == [victim], records[1]["events"]
    assert "died" in failed[0]["error"] and records[1]["recovery"]
    assert victim not in coordinator.pool.handles and len(records) == 3
    assert all(victim not in r["plan"]["assignment"] for r in records[2:])


class RaisingDevice(Device):
    """Raises in its first round, once per run (a marker file beside the model remembers it)."""

    def train(self, order, adapter, slots=None):
        marker = Path(self.setup.model_path) / f"raised-{os.environ.get('PYTEST_XDIST_WORKER', '')}{self.setup.seed}"
        if self.spec.name == "fast-0" and not marker.exists():
            marker.write_text("1")
            raise ValueError("injected fault inside the actor")
        return super().train(order, adapter, slots)


def test_device_exception_on_ray_is_restarted(tiny_bert, tmp_path, ray_local, monkeypatch, tiny_config):
    """A device raising inside its actor is restarted and given its blocks again."""
    import cloudpickle

    from deft_ray.actors import launch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(launch, "Device", RaisingDevice)
    config = tiny_config(tiny_bert, rounds=2, seed=77, reliability={"checkpoint_every": 0, "on_device_failure": "restart"},
                         devices=[{"name": "fast", "count": 4, "memory_fraction": 1.2}])
    coordinator = launch.build_ray(config, RunDirectory(tmp_path / "run"))
    list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    kinds = [(e["kind"], e.get("device")) for e in records[0]["events"] if "device" in e]
    assert kinds == [("device_failed", "fast-0"), ("device_restarted", "fast-0")], records[0]["events"]
    assert any("ValueError: injected fault inside the actor" in e.get("error", "") for e in records[0]["events"])
    assert "fast-0" in records[0]["recovery"][0]["devices"]  # the restarted device took its block again
    assert len(coordinator.specs) == 4 and "fast-0" in records[1]["plan"]["assignment"]


class SlowDevice(Device):
    """A device that can be told to stall in one round (a real straggler)."""

    stall: tuple[int, float] | None = None

    def slow_down(self, round_idx: int, seconds: float) -> None:
        self.stall = (round_idx, seconds)

    def train(self, order, adapter, slots=None):
        if self.stall and order.round_idx == self.stall[0]:
            time.sleep(self.stall[1])
        return super().train(order, adapter, slots)


def test_realtime_straggler_past_the_deadline_is_recomputed_on_ray(tiny_bert, tmp_path, ray_local, monkeypatch, tiny_config):
    import cloudpickle

    from deft_ray.actors import launch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(launch, "Device", SlowDevice)
    # The tiny model's measured profile: rounds of some 20 ms emulated, 0.4 s wall at time_scale 20.
    config = tiny_config(tiny_bert, rounds=2, clock="realtime", time_scale=20.0,
                         reliability={"checkpoint_every": 0, "straggler_deadline": 3.0})
    coordinator = launch.build_ray(config, RunDirectory(tmp_path / "run"))
    victim = planned_devices(coordinator, 2)[0]
    ray_local.get(coordinator.pool.handles[victim].slow_down.remote(2, 15.0), timeout=60)
    list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    late = [e for e in records[1]["events"] if e["kind"] == "straggler"]
    assert [e["device"] for e in late] == [victim] and records[1]["devices"][victim]["status"] == "late"
    assert victim not in records[1]["recovery"][0]["devices"]
    assert records[1]["wall_s"] < 15.0, "the round did not wait for the straggler"


# ------------------------------------------------------------------------------ driver killed
@pytest.mark.parametrize("where", ["local", "ray"])
def test_sigkill_of_the_driver_then_resume(tiny_bert, tmp_path, where, tiny_config):
    """`deft-ray run` killed with SIGKILL mid-run, then `deft-ray run --resume`: same adapter
    (1e-5) and the same ledger as an uninterrupted run with the same seed. ``ray``: the devices
    and the coordinator are actors of the local Ray the killed driver started."""
    import yaml

    from deft_ray.config import to_dict

    rounds = 40 if where == "local" else 30
    config = tiny_config(tiny_bert, rounds=rounds, eval_every=10, profile=fixed_profile(tmp_path),
                         reliability={"checkpoint_every": 5})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(to_dict(config)))
    # The reference run, uninterrupted (devices in-process; the same numbers as on Ray).
    whole = build_local(config, RunDirectory(tmp_path / "whole"))
    list(whole.run())

    out = tmp_path / "killed"
    local = ["--local"] if where == "local" else []
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "", "DEFT_RAY_STARTUP_TIMEOUT_S": "300"}
    command = [sys.executable, "-m", "deft_ray.cli", "run", "--config", str(config_path), "--out", str(out), *local]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    deadline = time.monotonic() + 600
    while latest_checkpoint(out / "checkpoints") is None or "round-000010" > latest_checkpoint(out / "checkpoints").name:
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    done_before = len(ledger(out))
    assert done_before < rounds, "the run finished before it could be killed"
    resumed = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--resume", str(out), *local],
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [deterministic(r) for r in ledger(out)] == [deterministic(r) for r in ledger(tmp_path / "whole")]
    from safetensors.numpy import load_file
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    reference = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    assert saved.keys() == reference.keys()
    for name in saved:
        np.testing.assert_allclose(saved[name], reference[name], atol=1e-5, rtol=0)
