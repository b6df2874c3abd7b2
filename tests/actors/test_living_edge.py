"""Runs on a living edge: devices that go offline mid-round, rounds that wait for devices, and
shadowing + mobility + availability reproduced across a resume and through the runner."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from deft_ray.actors.launch import build_local
from deft_ray.runtime.ledger import RunDirectory, seeded_fields
from deft_ray.runtime.records import RunWarning
from tests.actors.test_faults import check_every_block_once, fixed_profile, ledger


def probe(config, folder):
    """Rounds 1 and 2 of ``config`` without any availability: round 1's end time and round 2's record."""
    coordinator = build_local(config, RunDirectory(folder))
    first = coordinator.run_round(1)
    return first.emulated_time_s, coordinator.run_round(2)


def latency(device: dict) -> float:
    return device["compute_s"] + device["upload_s"]


def with_availability(tiny_config, tiny_bert, tmp_path, trace: dict, **overrides):
    path = tmp_path / "online.json"
    path.write_text(json.dumps(trace))
    return tiny_config(tiny_bert, reliability={"checkpoint_every": 0, "availability_trace": str(path)}, **overrides)


def test_a_device_going_offline_mid_round_fails_and_its_blocks_are_replanned(tiny_bert, tmp_path, tiny_config):
    profile = fixed_profile(tmp_path)
    end_1, second_alone = probe(tiny_config(tiny_bert, rounds=3, profile=profile, reliability={"checkpoint_every": 0}),
                                tmp_path / "probe")
    victim = second_alone.bottleneck_device
    away_s = 0.5 * latency(second_alone.devices[victim].to_json())
    config = with_availability(tiny_config, tiny_bert, tmp_path, {victim: [[0, end_1 + away_s], [end_1 + 1e4, 1e9]]},
                               rounds=3, profile=profile)
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    second = records[1]
    assert victim in second["online"] and second["plan"]["assignment"] == second_alone.plan.to_dict()["assignment"]
    assert second["devices"][victim]["status"] == "failed" and "went offline" in second["devices"][victim]["error"]
    assert second["recovery"] and victim not in second["recovery"][0]["devices"]
    replanned = [e for e in second["events"] if e["kind"] == "replanned"]
    assert replanned and sorted(replanned[0]["blocks"]) == sorted(second_alone.plan.assignment[victim])
    assert not any(e["kind"] == "device_removed" for e in second["events"])  # offline is not gone
    assert victim in {spec.name for spec in coordinator.specs}
    assert victim not in records[2]["online"] and victim not in records[2]["plan"]["assignment"]
    # the first phase ended when it lost the victim or got its last upload; the re-plan ran after it
    first_phase_s = max([latency(d) for d in second["devices"].values() if d["status"] == "applied"] + [away_s])
    recovery_s = max(latency(d) for d in second["recovery"][0]["devices"].values())
    assert second["measured_latency_s"] == pytest.approx(first_phase_s + recovery_s)


@pytest.mark.parametrize("offline", ["fast", "all"])
def test_a_round_the_online_devices_cannot_cover_waits_for_devices(tiny_bert, tmp_path, tiny_config, offline):
    # jbba gives each device one block: 3 devices online cannot cover 4 blocks, nor can none
    profile = fixed_profile(tmp_path)
    end_1, _ = probe(tiny_config(tiny_bert, rounds=3, profile=profile, reliability={"checkpoint_every": 0}),
                     tmp_path / "probe")
    names = [f"fast-{i}" for i in range(3)] + ([f"slow-{i}" for i in range(3)] if offline == "all" else [])
    back_s = end_1 + 25.0
    config = with_availability(tiny_config, tiny_bert, tmp_path, {n: [[0, end_1], [back_s, 1e9]] for n in names},
                               rounds=3, profile=profile)
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    items = list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    assert records[0]["waited_s"] == 0 and records[1]["waited_s"] == pytest.approx(25.0)
    assert sorted(records[1]["online"]) == sorted(coordinator.pool.devices)  # planned once all were back
    waited = [e for e in records[1]["events"] if e["kind"] == "waited_for_devices"]
    assert len(waited) == 1 and waited[0]["waited_s"] == pytest.approx(25.0)
    assert records[1]["emulated_time_s"] == pytest.approx(back_s + records[1]["measured_latency_s"])
    warnings = [item.message for item in items if isinstance(item, RunWarning)]
    assert warnings == ["round 2 waited 25.0 emulated s for enough devices to come online to cover the blocks"]
    assert len(records) == 3 and coordinator.summary is not None


def test_devices_that_never_come_back_stop_the_run_as_before(tiny_bert, tmp_path, tiny_config):
    from deft_ray.runtime.recovery import CoverageError

    profile = fixed_profile(tmp_path)
    end_1, _ = probe(tiny_config(tiny_bert, rounds=3, profile=profile, reliability={"checkpoint_every": 0}),
                     tmp_path / "probe")
    config = with_availability(tiny_config, tiny_bert, tmp_path, {f"fast-{i}": [[0, end_1]] for i in range(3)},
                               rounds=3, profile=profile)
    with pytest.raises(CoverageError, match=r"round 2: the round: 3 of 6 devices are online, too few .* none of the others ever comes online again"):
        list(build_local(config, RunDirectory(tmp_path / "run")).run())


def payload_profile(tiny_bert, folder) -> str:
    """A fixed profile (separate runs plan alike) whose payloads are the tiny model's, so that its
    rounds end when their plans say (and the next round's plan made ahead is taken)."""
    from deft_ray.learning.lora import LoraSpec
    from deft_ray.learning.model import BlockModel

    model = BlockModel.from_pretrained(tiny_bert, num_labels=2, lora=LoraSpec(), seed=0)
    blocks = [{"compute_s": 0.4 - 0.05 * n, "memory_bytes": 8e8 - 1.5e8 * n, "payload_bits": model.block_payload_bits(n)}
              for n in range(model.num_blocks)]
    path = folder / "payload-profile.json"
    path.write_text(json.dumps({"blocks": blocks}))
    return str(path)


def living(tiny_config, tiny_bert, tmp_path, **overrides):
    if "profile" not in overrides:
        overrides["profile"] = fixed_profile(tmp_path)
    return tiny_config(tiny_bert, eval_every=2,
                       network={"shadowing_db": 6.0, "shadowing_coherence_s": 2.0, "rayleigh_fading": True},
                       devices=[{"name": "fast", "count": 3, "memory_fraction": 1.2, "distance_m": [50, 400],
                                 "speed_mps": 30.0, "mean_online_s": 6.0, "mean_offline_s": 2.0},
                                {"name": "slow", "count": 3, "compute_scale": 4.0, "memory_fraction": 0.5,
                                 "distance_m": [80, 300], "speed_mps": 10.0, "mean_online_s": 8.0,
                                 "mean_offline_s": 2.0}], **overrides)


def test_a_resumed_living_run_draws_the_same_channels_and_availability(tiny_bert, tmp_path, tiny_config):
    config = living(tiny_config, tiny_bert, tmp_path, rounds=9, reliability={"checkpoint_every": 2},
                    profile=payload_profile(tiny_bert, tmp_path))
    whole = build_local(config, RunDirectory(tmp_path / "whole"))
    list(whole.run())
    cut = build_local(config, RunDirectory(tmp_path / "cut"))
    for _ in zip(range(5), (item for item in cut.run() if not isinstance(item, RunWarning))):
        pass  # rounds 1-5, checkpoints after 2 and 4, then "crash"
    resumed = build_local(config, RunDirectory(tmp_path / "cut"), resume=True)
    assert resumed.next_round == 5
    list(resumed.run())
    lines = ledger(tmp_path / "whole")
    assert [seeded_fields(r) for r in ledger(tmp_path / "cut")] == [seeded_fields(r) for r in lines]
    assert whole.edge.state_dict() == resumed.edge.state_dict()
    assert any(r["planned_ahead"] for r in ledger(tmp_path / "cut")[5:])  # plans made ahead after the resume too
    assert len({tuple(r["online"]) for r in lines}) > 1  # devices came and went
    assert len({json.dumps(r["plan"]["bandwidth_hz"]) for r in lines}) == len(lines)  # channels changed


def test_a_run_with_shadowing_mobility_and_availability_end_to_end(tiny_bert, tmp_path, tiny_config):
    from deft_ray.runner import run

    config = living(tiny_config, tiny_bert, tmp_path, rounds=8, reliability={"checkpoint_every": 4})
    out = io.StringIO()
    summary = run(config, out_dir=tmp_path / "run", use_ray=False, console=Console(file=out, width=200))
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    assert summary.rounds == 8 and len(records) == 8
    for record in records:
        assert set(record["plan"]["assignment"]) <= set(record["online"])
    starts = [r["emulated_time_s"] - r["measured_latency_s"] for r in records]
    assert starts[0] == pytest.approx(sum(r["waited_s"] for r in records[:1]))
    assert np.all(np.diff(starts) > 0)  # the edge moved on with emulated time, waits included
    assert records[-1]["emulated_time_s"] == pytest.approx(sum(r["measured_latency_s"] + r["waited_s"] for r in records))
    assert "round    8" in out.getvalue()


def test_under_the_realtime_clock_a_round_waits_for_devices_too(tiny_bert, tmp_path, tiny_config):
    names = [f"{group}-{i}" for group in ("fast", "slow") for i in range(3)]
    config = with_availability(tiny_config, tiny_bert, tmp_path, {n: [[5.0, 1e9]] for n in names}, rounds=2,
                               profile=fixed_profile(tmp_path), clock="realtime", time_scale=0.01)
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    list(coordinator.run())
    records = ledger(tmp_path / "run")
    check_every_block_once(records)
    assert records[0]["waited_s"] == pytest.approx(5.0) and records[1]["waited_s"] == 0
    assert records[0]["emulated_time_s"] == pytest.approx(5.0 + records[0]["measured_latency_s"])
    assert sorted(records[0]["online"]) == sorted(names)
