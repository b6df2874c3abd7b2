"""Factories shared by the runtime tests: a tiny run config, the checks every run directory passes,
and what a device is built from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from deft_ray.config import RunConfig, config_from_dict, to_dict


def make_tiny_config(model_dir: str, **overrides) -> RunConfig:
    data = to_dict(RunConfig())
    data.update(rounds=3, eval_every=2, seed=1,
                model={**data["model"], "name_or_path": model_dir, "max_length": 24},
                data={**data["data"], "max_train_examples": 400, "max_eval_examples": 64, "batch_size": 8},
                devices=[{"name": "fast", "count": 3, "compute_scale": 1.0, "memory_fraction": 1.2},
                         {"name": "slow", "count": 3, "compute_scale": 4.0, "memory_fraction": 0.5}])
    data.update(overrides)
    return config_from_dict(data)


def check_run_directory_of(out, config: RunConfig, num_blocks: int):
    assert (out / "config.yaml").is_file() and (out / "summary.json").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["rounds"] == config.rounds
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, config.rounds + 1))
    for record in records:
        blocks = sorted(b for device in record["devices"].values() for b in device["blocks"])
        assert blocks == list(range(num_blocks)), "every block exactly once per round"
        assert sorted(b for bs in record["plan"]["assignment"].values() for b in bs) == list(range(num_blocks))
        assert record["measured_latency_s"] == pytest.approx(record["planned_latency_s"], rel=1e-6)
        assert record["bottleneck_device"] in record["devices"]
    assert records[1]["evaluation"] and "accuracy" in records[1]["evaluation"]
    assert records[-1]["evaluation"] is not None
    assert records[-1]["emulated_time_s"] == pytest.approx(sum(r["measured_latency_s"] for r in records))
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["devices.png", "labels.png", "latency.png", "metric.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == config.rounds and summary["devices"] == config.num_devices
    return records




@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(model_dir, **overrides)``: 3 rounds on 6 devices (3 fast, 3 slow) of a tiny model."""
    return make_tiny_config


@pytest.fixture(scope="session")
def check_run_directory():
    """``check_run_directory(out, config, num_blocks)``: the checks every finished run directory passes;
    returns its ledger lines."""
    return check_run_directory_of


DEVICE_EXAMPLES = 32


@pytest.fixture(scope="module")
def device_inputs(tiny_bert):
    """``(model, backbone, columns, adapter)``: a tiny BERT (seed 3), its frozen backbone as numpy,
    :data:`DEVICE_EXAMPLES` random examples and the model's adapter state: what a Device is built from."""
    from deft_ray.learning.lora import LoraSpec
    from deft_ray.learning.model import BlockModel, backbone_state_numpy

    model = BlockModel.from_pretrained(tiny_bert, num_labels=2, lora=LoraSpec(), seed=3)
    rng = np.random.default_rng(0)
    columns = {"input_ids": rng.integers(5, 1000, size=(DEVICE_EXAMPLES, 12)),
               "attention_mask": np.ones((DEVICE_EXAMPLES, 12), dtype=np.int64),
               "labels": rng.integers(0, 2, size=DEVICE_EXAMPLES)}
    adapter = {name: value.numpy() for name, value in model.trainable_state().items()}
    return model, backbone_state_numpy(model), columns, adapter
