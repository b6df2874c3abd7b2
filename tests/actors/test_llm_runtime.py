"""End-to-end decoder runs: synthetic-instructions on a tiny random Llama, in-process and on Ray actors."""

from __future__ import annotations

import json

import pytest

from deft_ray.runner import run

DECODER_LAYERS = 3
LLM_DATA = {"task": "synthetic-instructions", "max_train_examples": 300, "max_eval_examples": 32,
            "exact_match_examples": 8, "max_new_tokens": 4, "batch_size": 4}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> str:
    from deft_ray.learning.tiny_decoders import write_tiny_decoder

    return write_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), family="llama", num_layers=DECODER_LAYERS)


def llm_config(tiny_config, model_dir: str, **overrides):
    from deft_ray.config import to_dict

    data = to_dict(tiny_config(model_dir))
    data["model"].update(max_length=32)
    data["data"].update(LLM_DATA)
    return tiny_config(model_dir, model=data["model"], data=data["data"], **overrides)


def check_llm_run(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, len(records) + 1))
    for record in records:
        assert sorted(b for d in record["devices"].values() for b in d["blocks"]) == list(range(DECODER_LAYERS))
    evaluated = [r["evaluation"] for r in records if r["evaluation"]]
    assert evaluated and all(list(e) == ["exact_match", "eval_loss", "perplexity"] for e in evaluated)
    assert all(0 <= e["exact_match"] <= 1 and e["perplexity"] == pytest.approx(__import__("math").exp(e["eval_loss"]))
               for e in evaluated)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_exact_match"] == max(e["exact_match"] for e in evaluated)
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["devices.png", "latency.png", "metric.png"]
    return records


def test_local_decoder_run_and_its_adapter_generates(tiny_llama, tmp_path, tiny_config):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = llm_config(tiny_config, tiny_llama)
    summary = run(config, out_dir=tmp_path / "run", use_ray=False)
    records = check_llm_run(tmp_path / "run")
    assert len(records) == config.rounds and summary.metric == "exact_match"
    profile = json.loads((tmp_path / "run" / "profile.json").read_text())["blocks"]
    assert len(profile) == DECODER_LAYERS and profile[0]["memory_bytes"] > profile[-1]["memory_bytes"]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    weights = sum(p.numel() * p.element_size() for p in base.parameters())
    assert profile[-1]["memory_bytes"] > weights  # every device holds the whole frozen backbone
    model = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()
    adapter_config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "CAUSAL_LM" and set(adapter_config["target_modules"]) == {"q_proj", "v_proj"}
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "add 2 3"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_a_loss_target_stops_the_run_when_the_loss_falls_below_it(tiny_llama, tmp_path, tiny_config):
    """eval_loss is lower-is-better: a target far above any loss is met at the first evaluation
    (under the higher-is-better check it would never be)."""
    from deft_ray.config import to_dict

    raw = to_dict(llm_config(tiny_config, tiny_llama))
    raw["data"].update(task="instruction", train_file=str(_instruction_file(tmp_path)), exact_match_examples=0)
    config = tiny_config(tiny_llama, model=raw["model"], data=raw["data"], rounds=6, eval_every=1, target_metric=1e6)
    summary = run(config, out_dir=tmp_path / "run", use_ray=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and list(records[0]["evaluation"]) == ["eval_loss", "perplexity"]
    assert [e["kind"] for e in records[0]["events"]][-1] == "target_reached"
    assert summary.metric == "eval_loss" and summary.best_metric == records[0]["evaluation"]["eval_loss"]


def test_without_generations_the_run_ranks_by_eval_loss(tiny_llama, tmp_path, tiny_config):
    """exact_match_examples: 0 scores no generations, so synthetic-instructions has no exact match
    to rank by; the run's metric is then its eval loss."""
    from deft_ray.config import to_dict

    raw = to_dict(llm_config(tiny_config, tiny_llama))
    raw["data"].update(exact_match_examples=0)
    summary = run(tiny_config(tiny_llama, model=raw["model"], data=raw["data"], rounds=2, eval_every=2),
                  out_dir=tmp_path / "run", use_ray=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert list(records[-1]["evaluation"]) == ["eval_loss", "perplexity"]
    assert summary.metric == "eval_loss" and summary.best_metric == records[-1]["evaluation"]["eval_loss"]


def test_ray_decoder_run_with_device_actors(tiny_llama, tmp_path, ray_local, tiny_config):
    config = llm_config(tiny_config, tiny_llama, scheme="jbba", rounds=2, eval_every=2)
    run(config, out_dir=tmp_path / "run", use_ray=True)
    check_llm_run(tmp_path / "run")


def test_a_classification_task_on_a_decoder_is_refused_before_any_device(tiny_llama, tmp_path, tiny_config):
    from deft_ray.errors import InputError

    with pytest.raises(InputError, match="task 'synthetic-sentiment' needs a sequence classifier"):
        run(tiny_config(tiny_llama), out_dir=tmp_path / "run", use_ray=False)


def _instruction_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"say {w}", "output": w}) + "\n"
                            for w in ("hi", "yo", "ok", "no", "yes", "up", "go", "be") * 10))
    return path


def test_one_decoder_round_equals_a_joint_gradient_step(tiny_llama, tmp_path, tiny_config):
    """With every device on the same batch, the assembled decoder update is one SGD step on the joint gradient."""
    import torch

    from deft_ray.actors.launch import build_local
    from deft_ray.runtime.ledger import RunDirectory

    config = llm_config(tiny_config, tiny_llama, rounds=1, optimizer={"name": "sgd", "lr": 0.5, "weight_decay": 0.0})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    shared = coordinator.pool.devices[next(iter(coordinator.pool.devices))].stream.next_batch()
    for device in coordinator.pool.devices.values():
        device.stream.next_batch = lambda shared=shared: shared
    before = coordinator.model.trainable_state()
    coordinator.model.peft_model.zero_grad(set_to_none=True)
    coordinator.model.loss(shared).backward()  # the oracle: one plain backward through .grad
    joint = {n: p.grad.clone() for n, p in coordinator.model.named_trainable_parameters().items()}
    coordinator.model.peft_model.zero_grad(set_to_none=True)
    coordinator.run_round(1)
    after = coordinator.model.trainable_state()
    for name, gradient in joint.items():
        torch.testing.assert_close(after[name], before[name] - 0.5 * gradient, rtol=1e-5, atol=1e-7)
