"""Energy in the ledger and summary, energy budgets kept by a run, and compressed uploads end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deft_ray.actors.device import Device
from deft_ray.config import OptimizerConfig
from deft_ray.edge.clock import Clock
from deft_ray.edge.devices import DeviceSpec
from deft_ray.learning.lora import LoraSpec
from deft_ray.learning.model import BlockModel, backbone_state_numpy
from deft_ray.runner import run
from deft_ray.runtime.build import DeviceSetup
from deft_ray.runtime.records import BlockGradientsOrder
from deft_ray.runtime.round_kinds import restore_upload

POWER_W = {"fast": 40.0, "slow": 4.0}


def ledger(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def powered(tiny_config, tiny_bert, *, budget_j=None, **overrides):
    devices = [{"name": "fast", "count": 3, "compute_scale": 1.0, "memory_fraction": 1.2,
                "compute_power_w": POWER_W["fast"], "tx_power_dbm": 23.0},
               {"name": "slow", "count": 3, "compute_scale": 4.0, "memory_fraction": 0.5,
                "compute_power_w": POWER_W["slow"], "tx_power_dbm": 20.0, "energy_budget_j": budget_j}]
    return tiny_config(tiny_bert, devices=devices, **overrides)


def test_energy_is_power_times_seconds_in_the_ledger_and_summary(tiny_bert, tmp_path, tiny_config,
                                                                 check_run_directory):
    config = powered(tiny_config, tiny_bert)
    run(config, out_dir=tmp_path / "run", use_ray=False)
    records = check_run_directory(tmp_path / "run", config, num_blocks=4)
    tx_w = {"fast": 10 ** (23 / 10) / 1000, "slow": 10 ** (20 / 10) / 1000}
    per_device: dict[str, float] = {}
    for record in records:
        for name, device in record["devices"].items():
            group = name.split("-")[0]
            expected = POWER_W[group] * device["compute_s"] + tx_w[group] * device["upload_s"]
            assert device["energy_j"] == pytest.approx(expected, rel=1e-9)
            assert record["plan"]["device_energy_j"][name] == pytest.approx(expected, rel=1e-6)  # as planned
            per_device[name] = per_device.get(name, 0.0) + expected
        assert record["energy_j"] == pytest.approx(sum(d["energy_j"] for d in record["devices"].values()))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["energy_j"] == pytest.approx(sum(per_device.values()))
    assert summary["device_energy_j"] == pytest.approx(per_device)


def test_a_run_keeps_every_device_within_its_energy_budget(tiny_bert, tmp_path, tiny_config):
    network = {"rate_model": "spectral_efficiency"}  # upload time falls as 1 / bandwidth
    free = powered(tiny_config, tiny_bert, scheme="exact", rounds=2, network=network)
    run(free, out_dir=tmp_path / "free", use_ray=False)
    slow = [d for r in ledger(tmp_path / "free") for n, d in r["devices"].items() if n.startswith("slow")]
    # binds: each slow device may upload only as long as it would with half the band it did not get
    band = free.network.bandwidth_hz
    budget = min(POWER_W["slow"] * d["compute_s"] + (d["energy_j"] - POWER_W["slow"] * d["compute_s"])
                 * d["bandwidth_hz"] / ((d["bandwidth_hz"] + band) / 2) for d in slow)
    config = powered(tiny_config, tiny_bert, budget_j=budget, scheme="exact", rounds=2, network=network,
                     profile=str(tmp_path / "free" / "profile.json"))  # the same costs, not re-measured
    run(config, out_dir=tmp_path / "run", use_ray=False)
    assert any(n.startswith("slow") for r in ledger(tmp_path / "run") for n in r["devices"])
    for record in ledger(tmp_path / "run"):
        for name, device in record["devices"].items():
            if name.startswith("slow"):
                assert device["energy_j"] <= budget * (1 + 1e-6)
                assert device["bandwidth_hz"] > 0


@pytest.fixture(scope="module")
def int8_device(tiny_bert):
    model = BlockModel.from_pretrained(tiny_bert, num_labels=2, lora=LoraSpec(), seed=3)
    rng = np.random.default_rng(0)
    columns = {"input_ids": rng.integers(5, 1000, size=(16, 12)), "attention_mask": np.ones((16, 12), dtype=np.int64),
               "labels": rng.integers(0, 2, size=16)}
    spec = DeviceSpec(name="d0", compute_scale=2.0, memory_budget_bytes=1e12, distance_m=100.0, tx_power_w=0.2,
                      compute_power_w=7.0)
    setups = {dtype: DeviceSetup(model_path=tiny_bert, num_labels=2, lora=LoraSpec(), seed=3, batch_size=4,
                                 clock=Clock(), block_memory_bytes=(1.0,) * 4, optimizer=OptimizerConfig(),
                                 upload_dtype=dtype) for dtype in ("float32", "int8")}
    devices = {dtype: Device(spec, setup, backbone_state_numpy(model), columns, np.arange(16))
               for dtype, setup in setups.items()}
    adapter = {name: value.numpy() for name, value in model.trainable_state().items()}
    return devices, adapter, model


def test_a_device_really_sends_int8_and_the_server_restores_float32(int8_device):
    devices, adapter, model = int8_device
    order = BlockGradientsOrder(round_idx=1, blocks=(1, 2), bandwidth_hz=1e5, rate_bps=1e6, planned_compute_s=0.5)
    exact = devices["float32"].train(order, adapter)
    sent = devices["int8"].train(order, adapter)
    names = model.block_parameter_names(1) + model.block_parameter_names(2)
    assert sorted(sent.tensors) == sorted(names) and sent.dtype == "int8"
    assert all(value.dtype == np.int8 for value in sent.tensors.values())
    elements = sum(value.size for value in exact.tensors.values())
    assert exact.payload_bits == 32 * elements
    assert sent.payload_bits == 8 * elements + 32 * len(names)
    assert sent.upload_s == pytest.approx(sent.payload_bits / 1e6)
    assert sent.energy_j == pytest.approx(7.0 * 0.5 + 0.2 * sent.upload_s)
    restored = restore_upload(sent)
    for name, value in exact.tensors.items():  # same batch (same seeded stream), so the same gradient
        assert restored.tensors[name].dtype == np.float32
        assert np.abs(restored.tensors[name] - value).max() <= np.abs(value).max() / 127 * (1 + 1e-5)


@pytest.mark.parametrize("scheme", ["jbba", "fedavg"])
def test_an_int8_run_learns(tiny_bert, tmp_path, tiny_config, check_run_directory, scheme):
    """Every device draws from the same 32 examples, so 20 rounds at a high rate fit them."""
    config = tiny_config(tiny_bert, scheme=scheme, rounds=20, eval_every=2, network={"upload_dtype": "int8"},
                         optimizer={"name": "adamw", "lr": 0.03, "weight_decay": 0.0},
                         data={"max_train_examples": 32, "max_eval_examples": 64, "batch_size": 16, "partition": "shared"})
    run(config, out_dir=tmp_path / "run", use_ray=False)
    if scheme == "jbba":  # planned latency (int8 payloads) equals the emulated one (int8 uploads)
        check_run_directory(tmp_path / "run", config, num_blocks=4)
    losses = [r["loss"] for r in ledger(tmp_path / "run")]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.85, losses
