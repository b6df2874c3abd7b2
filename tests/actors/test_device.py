"""The Device class alone, without Ray: blocks, budgets, emulated time on both clocks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deft_ray.actors.device import Device, MemoryBudgetError
from deft_ray.config import OptimizerConfig
from deft_ray.edge.clock import Clock
from deft_ray.edge.devices import DeviceSpec
from deft_ray.learning.lora import LoraSpec
from deft_ray.runtime.build import DeviceSetup
from deft_ray.runtime.records import BlockGradientsOrder


@pytest.fixture(scope="module")
def shared(tiny_bert, device_inputs):
    model, backbone, columns, adapter = device_inputs
    return tiny_bert, backbone, columns, adapter, model


def make_device(shared, *, budget=1e12, clock=Clock(), scale=2.0):
    path, backbone, columns, _, _ = shared
    spec = DeviceSpec(name="d0", compute_scale=scale, memory_budget_bytes=budget, distance_m=100.0, tx_power_w=0.2)
    setup = DeviceSetup(model_path=path, num_labels=2, lora=LoraSpec(), seed=3, batch_size=4, clock=clock,
                        block_memory_bytes=(4e8, 3e8, 2e8, 1e8), optimizer=OptimizerConfig())
    return Device(spec, setup, backbone, columns, np.arange(len(columns["labels"])))


def order(blocks, planned_compute_s=0.5, rate_bps=1e6):
    return BlockGradientsOrder(round_idx=1, blocks=tuple(blocks), bandwidth_hz=1e5, rate_bps=rate_bps,
                     planned_compute_s=planned_compute_s)


def test_device_returns_exactly_its_blocks_gradients_and_emulated_times(shared):
    *_, adapter, model = shared
    device = make_device(shared)
    upload = device.train(order([1, 3]), adapter)
    assert set(upload.tensors) == set(model.block_parameter_names(1) + model.block_parameter_names(3))
    assert upload.payload_bits == model.block_payload_bits(1) + model.block_payload_bits(3)
    assert upload.upload_s == pytest.approx(upload.payload_bits / 1e6)
    assert upload.compute_s == 0.5  # virtual clock: the profile's prediction
    assert upload.memory_need_bytes == 3e8 and upload.peak_memory_bytes > 0


def test_device_refuses_blocks_over_its_memory_budget(shared):
    device = make_device(shared, budget=2.5e8)
    with pytest.raises(MemoryBudgetError, match=r"blocks \[1\] need 3e\+08 bytes, above its budget of 2.5e\+08"):
        device.train(order([1]), shared[3])
    device.train(order([2]), shared[3])  # 2e8 fits


def test_virtual_clock_does_not_sleep_and_realtime_clock_does(shared):
    adapter = shared[3]
    start = time.perf_counter()
    make_device(shared).train(order([3], planned_compute_s=2.0, rate_bps=1e3), adapter)  # ~400 s emulated
    assert time.perf_counter() - start < 30
    device = make_device(shared, clock=Clock("realtime", time_scale=0.5))
    start = time.perf_counter()
    upload = device.train(order([3], planned_compute_s=0.4, rate_bps=1e9), adapter)
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.5 * upload.latency_s - 1e-3
    assert upload.compute_s >= 0.4


def test_batches_differ_between_rounds_and_resume_exactly(shared):
    device = make_device(shared)
    state = device.stream_state()
    first = device.stream.next_batch()["input_ids"]
    second = device.stream.next_batch()["input_ids"]
    assert not np.array_equal(first, second)
    device.load_stream_state(state)
    assert np.array_equal(device.stream.next_batch()["input_ids"], first)


def test_work_goes_out_dearest_first_by_the_hosts_compute_times_next_batch_length():
    from deft_ray.actors.dispatch_order import dearest_first

    def orders(**costs):
        return {name: BlockGradientsOrder(round_idx=1, blocks=(0,), bandwidth_hz=1e5, rate_bps=1e6, planned_compute_s=s,
                                          profile_compute_s=host_s) for name, (s, host_s) in costs.items()}

    unscaled = orders(a=(1.0, None), b=(0.5, None), c=(0.6, None))
    # a: 1.0 x 10, b: 0.5 x 40, c: 0.6 x the median of the known lengths (25)
    assert dearest_first(unscaled, {"a": 10, "b": 40}) == ["b", "c", "a"]
    assert dearest_first(unscaled, {}) == ["a", "c", "b"]  # no lengths yet: the profile's order
    # a phone emulated 5x slower costs this host only its block's own time
    assert dearest_first(orders(phone=(2.0, 0.4), workstation=(0.6, 0.6)), {}) == ["workstation", "phone"]


@pytest.mark.parametrize("scheme, steps", [("jbba", 1), ("fedavg", 3)])
def test_an_order_carries_its_blocks_cost_to_the_host_and_to_the_emulated_device(tiny_bert, tmp_path, tiny_config,
                                                                                 scheme, steps):
    from deft_ray.actors.launch import build_local
    from deft_ray.runtime.ledger import RunDirectory

    config = tiny_config(tiny_bert, scheme=scheme, federated={"local_steps": steps},
                         devices=[{"name": "fast", "count": 3, "memory_fraction": 1.2},
                                  {"name": "slow", "count": 3, "compute_scale": 4.0, "memory_fraction": 1.2}])
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    instance = coordinator.instance_for_round()
    plan = coordinator.planner.plan(instance, 1)
    scale = {device.name: device.compute_scale for device in instance.devices}
    for name, order in coordinator.round_kind.work_orders(instance, plan, 1).items():
        lowest_s = max(instance.blocks[n].compute_s for n in order.blocks)
        assert order.profile_compute_s == pytest.approx(lowest_s * steps)
        assert order.planned_compute_s == pytest.approx(scale[name] * lowest_s * steps)


def test_an_upload_tells_the_length_of_the_devices_next_batch(shared):
    *_, adapter, _ = shared
    device = make_device(shared)
    for _ in range(3):
        upload = device.train(order([2]), adapter)
        assert upload.next_padded_length == device.stream.next_batch()["attention_mask"].shape[1]
