"""End-to-end runs on a tiny model: in-process and on Ray actors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deft_ray.config import RunConfig
from deft_ray.runner import resize_population, run


def test_local_run_writes_the_whole_run_directory(tiny_bert, tmp_path, tiny_config, check_run_directory):
    config = tiny_config(tiny_bert)
    summary = run(config, out_dir=tmp_path / "run", use_ray=False)
    records = check_run_directory(tmp_path / "run", config, num_blocks=4)
    assert summary.final_evaluation == records[-1]["evaluation"]
    slow_blocks = {b for r in records for name, d in r["devices"].items() if name.startswith("slow") for b in d["blocks"]}
    assert 0 not in slow_blocks  # slow devices hold only the cheapest blocks (memory_fraction 0.5)


def test_ray_run_with_device_actors(tiny_bert, tmp_path, ray_local, tiny_config, check_run_directory):
    config = tiny_config(tiny_bert, scheme="crunch")
    run(config, out_dir=tmp_path / "run", use_ray=True)
    check_run_directory(tmp_path / "run", config, num_blocks=4)


def test_error_inside_the_coordinator_actor_reaches_the_user_as_itself(tiny_bert, tmp_path, ray_local, tiny_config):
    from deft_ray.errors import InputError

    config = tiny_config(tiny_bert, profile="roberta-base_h200_fp32")  # 12 blocks for a 4-layer model
    with pytest.raises(InputError, match=r"^profile = 'roberta-base_h200_fp32': has 12 blocks but the model has 4"):
        run(config, out_dir=tmp_path / "run", use_ray=True)


def test_adapter_loads_with_the_base_model_alone(tiny_bert, tmp_path, tiny_config):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from deft_ray.actors.launch import build_local
    from deft_ray.runtime.ledger import RunDirectory

    config = tiny_config(tiny_bert, rounds=2)
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    list(coordinator.run())
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()
    batch = {k: torch.from_numpy(v[:4]) for k, v in coordinator.evaluation.columns.items() if k != "labels"}
    with torch.no_grad():
        expected = coordinator.model.evaluate_logits(batch)
        torch.testing.assert_close(loaded(**batch).logits, expected)


def test_one_round_update_equals_joint_gradient_step(tiny_bert, tmp_path, tiny_config):
    """Devices each compute their blocks on their own batch; when all devices see the same batch,
    the assembled update must equal one optimizer step on the joint gradient."""
    import torch

    from deft_ray.actors.launch import build_local
    from deft_ray.runtime.ledger import RunDirectory

    config = tiny_config(tiny_bert, rounds=1, optimizer={"name": "sgd", "lr": 0.5, "weight_decay": 0.0})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    shared = coordinator.pool.devices[next(iter(coordinator.pool.devices))].stream.next_batch()
    for device in coordinator.pool.devices.values():
        device.stream.next_batch = lambda shared=shared: shared
    before = coordinator.model.trainable_state()
    joint, _ = coordinator.model.block_gradients(list(range(coordinator.model.num_blocks)), shared)
    coordinator.run_round(1)
    after = coordinator.model.trainable_state()
    for name, gradient in joint.items():
        torch.testing.assert_close(after[name], before[name] - 0.5 * gradient, rtol=1e-5, atol=1e-7)


def test_resize_population_keeps_the_mix():
    config = RunConfig()
    resized = resize_population(config, 24)
    assert resized.num_devices == 24 and [g.count for g in resized.devices] == [8, 8, 8]
    assert resize_population(config, 5).num_devices == 5


def test_head_trained_at_the_server(tiny_bert, tmp_path, tiny_config, check_run_directory):
    config = tiny_config(tiny_bert, rounds=2, model={"name_or_path": tiny_bert, "max_length": 24, "head_with": "server"})
    run(config, out_dir=tmp_path / "run", use_ray=False)
    check_run_directory(tmp_path / "run", config, num_blocks=4)


def test_shipped_default_config_is_the_default():
    from pathlib import Path

    from deft_ray.config import load_config

    assert load_config(Path(__file__).resolve().parents[2] / "configs" / "default.yaml") == RunConfig()


@pytest.mark.parametrize("scheme", ["fedavg", "ffa-lora"])
def test_federated_schemes_run_on_the_same_harness(tiny_bert, tmp_path, scheme, tiny_config):
    from deft_ray.actors.launch import build_local
    from deft_ray.runtime.ledger import RunDirectory

    config = tiny_config(tiny_bert, rounds=2, scheme=scheme, federated={"local_steps": 2})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    before = {name: value.clone() for name, value in coordinator.model.trainable_state().items()}
    list(coordinator.run())
    after = coordinator.model.trainable_state()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        assert record["devices"], "some device takes part"
        for device in record["devices"].values():
            assert device["blocks"] == list(range(4)) and device["status"] == "applied"
        assert not any(name.startswith("slow") for name in record["devices"])  # they cannot hold the adapter
        # ffa-lora plans with half of every payload; the head, which travels whole, makes it a bit more
        assert record["measured_latency_s"] == pytest.approx(record["planned_latency_s"],
                                                             rel=1e-6 if scheme == "fedavg" else 2e-2)
    lora_a = [name for name in before if "lora_A" in name]
    lora_b = [name for name in before if "lora_B" in name]
    changed = {name for name in before if not torch_equal(before[name], after[name])}
    assert set(lora_b) <= changed
    if scheme == "ffa-lora":
        assert not changed & set(lora_a), "FFA-LoRA keeps A frozen"
    else:
        assert set(lora_a) <= changed


def test_fedavg_weighs_each_update_by_its_device_examples(tiny_bert):
    import numpy as np

    from deft_ray.learning.lora import LoraSpec
    from deft_ray.learning.model import BlockModel
    from deft_ray.runtime.records import BlockUpload
    from deft_ray.runtime.round_kinds import LocalUpdateAveraging

    model = BlockModel.from_pretrained(tiny_bert, num_labels=2, lora=LoraSpec(), seed=0)
    name, parameter = next(iter(model.named_trainable_parameters().items()))
    before = parameter.detach().clone().numpy()

    def update(device: str, change: float, num_examples: int) -> BlockUpload:
        return BlockUpload(device=device, round_idx=1, blocks=(0, 1, 2, 3), kind="delta", loss=0.5,
                           tensors={name: np.full(before.shape, change, dtype=np.float32)}, measured_compute_s=0.0,
                           compute_s=0.0, upload_s=0.0, payload_bits=0.0, memory_need_bytes=0.0, peak_memory_bytes=0.0,
                           num_examples=num_examples)

    kind = LocalUpdateAveraging(local_steps=1, train_lora_a=True)
    kind.apply(model, None, [update("a", 1.0, 10), update("b", 5.0, 30)], None)
    moved = parameter.detach().numpy() - before
    np.testing.assert_allclose(moved, (10 * 1.0 + 30 * 5.0) / 40, rtol=1e-6)  # 4.0, not the plain mean 3.0


def test_size_skewed_partition_reaches_the_devices_and_the_label_plot(tiny_bert, tmp_path, tiny_config):
    from deft_ray.actors.launch import build_local
    from deft_ray.runtime.ledger import RunDirectory

    config = tiny_config(tiny_bert, rounds=1, scheme="fedavg",
                         data={**dataclasses.asdict(tiny_config(tiny_bert).data), "partition": "size-skewed"})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    sizes = [device.num_examples for device in coordinator.pool.devices.values()]
    assert sum(sizes) == 400 and sizes == sorted(sizes) and sizes[0] < sizes[-1] / 4  # shares 1 : 2 : ... : 6
    assert (tmp_path / "run" / "plots" / "labels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_multiblock_trains_sets_of_blocks_with_fewer_devices_than_blocks(tiny_bert, tmp_path, tiny_config, check_run_directory):
    config = tiny_config(tiny_bert, rounds=2, scheme="multiblock",
                         devices=[{"name": "fast", "count": 2, "compute_scale": 1.0, "memory_fraction": 1.2}])
    run(config, out_dir=tmp_path / "run", use_ray=False)
    records = check_run_directory(tmp_path / "run", config, num_blocks=4)
    assert max(len(d["blocks"]) for r in records for d in r["devices"].values()) >= 2
