"""Packed devices, bounded concurrency and start-up records: in-process, then on Ray."""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest

from deft_ray.actors.device import Device
from deft_ray.actors.packed import DeviceHost, pack
from deft_ray.actors.placement import device_bundle, host_bundle
from deft_ray.actors.startup import STAGES, StartupTimes
from deft_ray.config import OptimizerConfig
from deft_ray.edge.clock import Clock
from deft_ray.edge.devices import DeviceSpec
from deft_ray.errors import InputError
from deft_ray.learning.lora import LoraSpec
from deft_ray.runtime.device_setup import DeviceSetup
from deft_ray.runtime.ledger import RunDirectory
from deft_ray.runtime.records import BlockGradientsOrder



def spec(name, **fields):
    return DeviceSpec(name=name, compute_scale=1.0, memory_budget_bytes=1e12, distance_m=100.0, tx_power_w=0.2,
                      **fields)


@pytest.fixture(scope="module")
def shared(tiny_bert, device_inputs):
    _, backbone, columns, adapter = device_inputs
    setup = DeviceSetup(model_path=tiny_bert, num_labels=2, lora=LoraSpec(), seed=3, batch_size=4, clock=Clock(),
                        block_memory_bytes=(4e8, 3e8, 2e8, 1e8), optimizer=OptimizerConfig())
    return setup, backbone, columns, adapter


def order(blocks):
    return BlockGradientsOrder(round_idx=1, blocks=tuple(blocks), bandwidth_hz=1e5, rate_bps=1e6, planned_compute_s=0.5)


def test_a_host_trains_each_device_as_a_device_of_its_own_would_even_on_threads(shared):
    setup, backbone, columns, adapter = shared
    specs = [spec("a"), spec("b"), spec("c")]
    parts = [np.arange(0, 10), np.arange(10, 20), np.arange(20, 32)]
    host = DeviceHost(specs, setup, backbone, columns, parts)
    alone = {s.name: Device(s, setup, backbone, columns, p) for s, p in zip(specs, parts)}
    work = {"a": [0], "b": [1, 3], "c": [2]}
    uploads = {}

    def train(name):
        uploads[name] = host.train(name, order(work[name]), adapter)

    threads = [threading.Thread(target=train, args=(name,)) for name in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, blocks in work.items():
        expected = alone[name].train(order(blocks), adapter)
        assert uploads[name].device == name and uploads[name].num_examples == len(parts["abc".index(name)])
        assert sorted(uploads[name].tensors) == sorted(expected.tensors)
        for key, value in expected.tensors.items():
            np.testing.assert_allclose(uploads[name].tensors[key], value, rtol=1e-5, atol=1e-7)
        assert uploads[name].loss == pytest.approx(expected.loss, rel=1e-6)
    assert host.stream_state("a") == alone["a"].stream_state() != host.stream_state("b")


def test_a_restarted_device_in_a_host_starts_its_stream_afresh(shared):
    setup, backbone, columns, adapter = shared
    host = DeviceHost([spec("a"), spec("b")], setup, backbone, columns, [np.arange(16), np.arange(16, 32)])
    fresh = host.stream_state("a")
    host.train("a", order([1]), adapter)
    moved = host.stream_state("b")
    assert host.stream_state("a") != fresh
    host.restart_device("a")
    assert host.stream_state("a") == fresh and host.stream_state("b") == moved
    host.drop("b")
    assert host.names() == ["a"]


def test_startup_times_add_up_per_stage_and_split_over_a_hosts_devices(shared):
    setup, backbone, columns, _ = shared
    one = Device(spec("a"), setup, backbone, columns, np.arange(8)).startup_times()
    assert one.devices == 1 and all(getattr(one, f"{s}_cpu_s") >= 0 and getattr(one, f"{s}_wall_s") >= 0 for s in STAGES)
    assert one.model_wall_s > 0 and one.cpu_s == pytest.approx(sum(getattr(one, f"{s}_cpu_s") for s in STAGES))
    host = DeviceHost([spec("a"), spec("b")], setup, backbone, columns, [np.arange(8), np.arange(8, 16)])
    times = host.startup_times()
    assert times.devices == 2
    share = times.per_device()
    assert share["model_wall_s"] == pytest.approx(times.model_wall_s / 2)
    assert share["cpu_s"] == pytest.approx(times.cpu_s / 2)
    made = StartupTimes(devices=4, **{f"{s}_{k}_s": 2.0 for s in STAGES for k in ("cpu", "wall")})
    assert made.cpu_s == 8.0 and made.per_device()["imports_cpu_s"] == 0.5 and made.per_device()["wall_s"] == 2.0


def test_pack_groups_consecutive_devices_with_the_same_resources():
    specs = [spec("a"), spec("b"), spec("c"), spec("g", num_gpus=0.5), spec("h", num_gpus=0.5),
             spec("x", resources={"jetson": 1.0}), spec("d")]
    assert pack(specs, 2) == [[0, 1], [2], [3, 4], [5], [6]]
    assert pack(specs, 10) == [[0, 1, 2], [3, 4], [5], [6]]
    assert pack(specs, 1) == [[i] for i in range(len(specs))]
    bundle = host_bundle([spec("a", num_cpus=0.5, resources={"jetson": 1.0}), spec("b", resources={"jetson": 1.0})])
    assert bundle == {"CPU": 0.5 + device_bundle(spec("b"))["CPU"], "jetson": 2.0}


def test_a_concurrency_limit_under_the_realtime_clock_is_refused():
    from deft_ray.config import config_from_dict

    with pytest.raises(InputError, match=r"runtime.max_concurrent_devices = 2: .*realtime.*; leave it empty"):
        config_from_dict({"clock": "realtime", "runtime": {"max_concurrent_devices": 2}})
    assert config_from_dict({"runtime": {"max_concurrent_devices": 2}}).runtime.max_concurrent_devices == 2
    with pytest.raises(InputError, match=r"runtime.devices_per_actor = 0"):
        config_from_dict({"runtime": {"devices_per_actor": 0}})


def test_packing_gpu_devices_is_refused_since_their_memory_cap_is_per_process():
    from deft_ray.config import RunConfig, config_from_dict, to_dict

    data = to_dict(RunConfig())
    data["devices"][1]["num_gpus"] = 0.25
    data["runtime"]["devices_per_actor"] = 4
    with pytest.raises(InputError, match=r"runtime.devices_per_actor = 4: would pack GPU devices \(group 'jetson'\)"
                                         r".*; use devices_per_actor: 1"):
        config_from_dict(data)
    data["runtime"]["devices_per_actor"] = 1
    assert config_from_dict(data).devices[1].num_gpus == 0.25


# ------------------------------------------------------------------------------ on Ray
class TimedDevice(Device):
    """Appends when each of its orders arrived, and when its computation began and ended, to a
    file beside the model."""

    def train(self, order, adapter, slots=None):
        arrived, compute = time.time(), self.model.block_gradients
        times = []

        def timed(*args):
            times.append(time.time())
            try:
                return compute(*args)
            finally:
                times.append(time.time())

        self.model.block_gradients = timed
        try:
            upload = super().train(order, adapter, slots)
        finally:
            self.model.block_gradients = compute
        with open(f"{self.setup.model_path}/intervals-{self.setup.seed}.jsonl", "a") as log:
            log.write(json.dumps([*times, arrived]) + "\n")
        return upload


def test_at_most_max_concurrent_devices_compute_at_once(tiny_bert, tmp_path, ray_local, monkeypatch, tiny_config,
                                                        check_run_directory):
    import cloudpickle

    from deft_ray.actors import launch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(launch, "Device", TimedDevice)
    config = tiny_config(tiny_bert, rounds=3, seed=91, runtime={"max_concurrent_devices": 1},
                         reliability={"checkpoint_every": 0})
    coordinator = launch.build_ray(config, RunDirectory(tmp_path / "run"))
    assert coordinator.pool.max_concurrent == 1
    list(coordinator.run())
    check_run_directory(tmp_path / "run", config, num_blocks=4)  # emulated latency still equals the plan's
    intervals = sorted(json.loads(line) for line in open(f"{tiny_bert}/intervals-91.jsonl"))
    assert len(intervals) == sum(len(r["devices"]) for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")))
    assert all(end <= next_began for (_, end, _), (next_began, _, _) in zip(intervals, intervals[1:])), intervals
    # one order more than the slots is in flight: the next device has its order before the core is free
    assert sum(next_arrived < end for (_, end, _), (_, _, next_arrived) in zip(intervals, intervals[1:])) >= 3


def test_packed_run_streams_its_start_and_survives_the_loss_of_a_host(tiny_bert, tmp_path, ray_local, tiny_config):
    """8 devices on 3 hosts: the driver sees them start; a host killed after round 1 fails its
    devices as they are given work, whose blocks are re-planned on the others, every block once."""
    from deft_ray.actors.launch import CoordinatorActor
    from deft_ray.actors.packed import PackedDevicePool
    from deft_ray.runtime.records import DevicesStarting, RoundRecord, RunStarted

    config = tiny_config(tiny_bert, rounds=3, runtime={"devices_per_actor": 3}, reliability={"checkpoint_every": 0},
                         devices=[{"name": "fast", "count": 8, "memory_fraction": 1.2}])
    actor = CoordinatorActor(config, str(tmp_path / "run"))
    seen = []
    actor._on_progress = lambda ready, total: seen.append(DevicesStarting(ready, total))  # noqa: SLF001
    assert isinstance(actor.ready(), RunStarted)
    assert len(seen) == 3 and seen[-1] == DevicesStarting(8, 8) and all(s.total == 8 for s in seen)
    assert [s.ready for s in seen] == sorted(s.ready for s in seen)
    coordinator = actor.coordinator
    pool = coordinator.pool
    assert isinstance(pool, PackedDevicePool) and len(pool.hosts()) == 3
    assert len(set(pool.pids().values())) == 3
    placed = next(e for e in coordinator.pending_events if e.kind.value == "devices_placed")
    assert placed.startup_stages_s["imports_cpu_s"] >= 0 and placed.startup_stages_s["model_wall_s"] > 0
    rounds = actor.run()
    assert isinstance(next(rounds), RoundRecord)
    victims = sorted(name for name, handle in pool.handles.items() if handle is pool.hosts()[0])
    ray_local.kill(pool.handles[victims[0]], no_restart=True)
    list(rounds)
    alive = {name for name in pool.handles if name not in victims}
    assert set(pool.stream_states()) == set(pool.pids()) == alive  # a dead host's idle devices are left out
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        applied = sorted(b for phase in [record, *record["recovery"]] for d in phase["devices"].values()
                         if d["status"] == "applied" for b in d["blocks"])
        assert applied == [0, 1, 2, 3] and record["blocks_applied"] == 4
    failed_in = [{e["device"] for e in r["events"] if e["kind"] == "device_failed"} for r in records]
    assert not failed_in[0] and failed_in[1] == set(victims) & set(records[1]["plan"]["assignment"]) != set()
    assert records[1]["recovery"] and not set(records[1]["recovery"][0]["devices"]) & set(victims)
    gone = set().union(*failed_in)
    assert gone <= set(victims)
    for i, record in enumerate(records):
        assert not set(record["plan"]["assignment"]) & set().union(*failed_in[:i])
    assert {s.name for s in coordinator.specs} == {f"fast-{i}" for i in range(8)} - gone


def test_the_driver_stream_reports_devices_starting_before_the_run_starts(tiny_bert, tmp_path, ray_local, tiny_config):
    from deft_ray.actors.launch import ray_stream
    from deft_ray.runtime.records import DevicesStarting, RunFinished, RunStarted

    config = tiny_config(tiny_bert, rounds=1, reliability={"checkpoint_every": 0})
    items = list(ray_stream(config, RunDirectory(tmp_path / "run"), None, False))
    start = next(i for i, item in enumerate(items) if isinstance(item, RunStarted))
    starting = [item for item in items if isinstance(item, DevicesStarting)]
    assert starting and items[:start] == starting and isinstance(items[-1], RunFinished)
    assert all(item.total == 6 for item in starting)
    assert [item.ready for item in starting] == sorted(item.ready for item in starting)
