"""Tests of deft_ray.learning.model on tiny random BERT/RoBERTa models (and one on the packaged MiniLM)."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from deft_ray.errors import InputError
from deft_ray.learning.model import (
    BlockModel,
    backbone_state_numpy,
)
from deft_ray.learning.pretrained import default_model_path
from deft_ray.learning.local_update import local_update
from deft_ray.learning.lora import LoraSpec
from deft_ray.learning.profiling import profile_blocks

NUM_LAYERS = 4
FAMILIES = ("bert", "roberta")
SENTENCES = ["a gripping, funny film", "dull", "the plot never quite comes together", "fine acting"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, tiny_model_factory) -> dict[str, str]:
    return {family: tiny_model_factory(str(tmp_path_factory.mktemp(family)), family=family,
                                   num_layers=NUM_LAYERS) for family in FAMILIES}


def make_batch(model_dir: str, labels: list[float] | None = None) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor(labels if labels is not None else [1, 0, 0, 1])
    return batch


def make_model(model_dir: str, **lora_overrides) -> BlockModel:
    return BlockModel.from_pretrained(model_dir, num_labels=2, lora=LoraSpec(**lora_overrides), seed=7)


def perturb(model: BlockModel, seed: int = 3) -> None:
    """Give every adapter weight a random value (LoRA B starts at zero, which hides bugs)."""
    generator = torch.Generator().manual_seed(seed)
    model.load_trainable_state({name: torch.randn(t.shape, generator=generator) * 0.1
                                for name, t in model.trainable_state().items()})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head_with", ["last", "server"])
def test_separate_block_gradients_assemble_to_joint_gradient(tiny_dirs, family, head_with):
    model = make_model(tiny_dirs[family], head_with=head_with)
    perturb(model)
    batch = make_batch(tiny_dirs[family])
    all_blocks = list(range(NUM_LAYERS + (head_with == "server")))
    joint, joint_loss = model.block_gradients(all_blocks, batch)
    assembled = {}
    for block_idx in all_blocks:
        grads, loss = model.block_gradients([block_idx], batch)
        assert loss == pytest.approx(joint_loss, rel=1e-6)
        assembled.update(grads)
    assert list(assembled) == list(joint) == list(model.trainable_state())
    torch.testing.assert_close(assembled, joint, rtol=1e-6, atol=1e-8)
    pair, _ = model.block_gradients([3, 1], batch)
    torch.testing.assert_close(pair, {name: joint[name] for name in pair}, rtol=1e-6, atol=1e-8)
    assert all(param.grad is None for param in model.peft_model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_are_layers_and_head_goes_with_last_block(tiny_dirs, family):
    model = make_model(tiny_dirs[family])
    batch = make_batch(tiny_dirs[family])
    assert model.num_blocks == NUM_LAYERS and model.head_block is None
    for block_idx in range(NUM_LAYERS):
        names = model.block_parameter_names(block_idx)
        lora = [n for n in names if ".lora_" in n]
        assert len(lora) == 4  # lora_A and lora_B of query and value
        assert all(re.search(rf"\.{family}\.encoder\.layer\.{block_idx}\.attention\.self\.(query|value)"
                             r"\.lora_[AB]\.default\.weight$", n) for n in lora)
        head = [n for n in names if n not in lora]
        assert bool(head) == (block_idx == NUM_LAYERS - 1)
        assert all(n.startswith("base_model.model.classifier.modules_to_save.default.") for n in head)
        grads, _ = model.block_gradients([block_idx], batch)
        assert list(grads) == names
        assert all(g.shape == model.named_trainable_parameters()[n].shape for n, g in grads.items())


def test_server_head_is_an_extra_block(tiny_dirs):
    model = make_model(tiny_dirs["bert"], head_with="server")
    assert model.num_blocks == NUM_LAYERS and model.head_block == NUM_LAYERS
    assert all(".lora_" in n for n in model.block_parameter_names(NUM_LAYERS - 1))
    head = model.block_parameter_names(NUM_LAYERS)
    assert sorted(n.rsplit(".", 1)[1] for n in head) == ["bias", "weight"]
    assert model.block_payload_bits(NUM_LAYERS) == (32 * 2 + 2) * 32
    with pytest.raises(InputError, match="block index"):
        model.block_parameter_names(NUM_LAYERS + 1)


def test_backward_stops_at_lowest_block(tiny_dirs):
    model = make_model(tiny_dirs["bert"])
    batch = make_batch(tiny_dirs["bert"])
    layers = model.peft_model.get_base_model().bert.encoder.layer
    needs_grad: dict[int, bool] = {}
    handles = [layer.register_forward_hook(
        lambda module, args, output, i=i: needs_grad.__setitem__(i, output[0].requires_grad))
        for i, layer in enumerate(layers)]
    try:
        for lowest in range(NUM_LAYERS):
            model.block_gradients([lowest, NUM_LAYERS - 1], batch)
            assert needs_grad == {i: i >= lowest for i in range(NUM_LAYERS)}
    finally:
        for handle in handles:
            handle.remove()
    saved_bytes = [model.saved_activation_bytes([i], batch) for i in range(NUM_LAYERS)]
    assert all(a > b > 0 for a, b in zip(saved_bytes, saved_bytes[1:]))
    # A set costs about what its lowest block costs (docs/method.md, "Cost model"): only the LoRA inputs are extra.
    assert saved_bytes[0] <= model.saved_activation_bytes([0, 2], batch) < 1.1 * saved_bytes[0]


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing")
def test_save_adapter_reproduces_logits_on_the_base_model(tiny_dirs, tmp_path):
    model = make_model(tiny_dirs["roberta"])
    perturb(model)
    batch = make_batch(tiny_dirs["roberta"])
    model.save_adapter(str(tmp_path / "adapter"))
    base = AutoModelForSequenceClassification.from_pretrained(tiny_dirs["roberta"], num_labels=2)
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        logits = reloaded(**{k: v for k, v in batch.items() if k != "labels"}).logits
    torch.testing.assert_close(logits, model.evaluate_logits(batch), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_state_is_zero_copy_and_equals_from_pretrained(tiny_dirs, family):
    model = make_model(tiny_dirs[family])
    state = backbone_state_numpy(model)
    assert not any("lora" in n or "classifier" in n or "base_layer" in n for n in state)
    for array in state.values():
        array.setflags(write=False)  # as arrays from Ray's object store are
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shared = BlockModel.from_shared_state(tiny_dirs[family], state, num_labels=2,
                                              lora=LoraSpec(), seed=7)
    assert not [w for w in caught if "not writable" in str(w.message)]
    torch.testing.assert_close(shared.trainable_state(), model.trainable_state(), rtol=0, atol=0)
    batch = make_batch(tiny_dirs[family])
    torch.testing.assert_close(shared.evaluate_logits(batch), model.evaluate_logits(batch), rtol=0, atol=0)
    base = shared.peft_model.get_base_model()
    name = f"{family}.encoder.layer.1.attention.self.query.weight"
    weight = base.get_submodule(f"{family}.encoder.layer.1.attention.self.query").base_layer.weight
    assert weight.data_ptr() == state[name].ctypes.data
    position_ids = base.get_submodule(f"{family}.embeddings").position_ids
    assert position_ids.data_ptr() == state[f"{family}.embeddings.position_ids"].ctypes.data
    grads, _ = shared.block_gradients([0], batch)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_seed_sets_the_adapter(tiny_dirs):
    first, second = make_model(tiny_dirs["bert"]), make_model(tiny_dirs["bert"])
    torch.testing.assert_close(first.trainable_state(), second.trainable_state(), rtol=0, atol=0)
    other = BlockModel.from_pretrained(tiny_dirs["bert"], num_labels=2, seed=8)
    name = first.block_parameter_names(0)[0]
    assert not torch.equal(first.trainable_state()[name], other.trainable_state()[name])


def test_profile_blocks_memory_falls_with_block_index(tiny_dirs):
    model = make_model(tiny_dirs["bert"])
    profile = profile_blocks(model, make_batch(tiny_dirs["bert"]), repeats=2, warmup=1)
    assert len(profile) == NUM_LAYERS
    memory = [block["memory_bytes"] for block in profile]
    assert all(a > b for a, b in zip(memory, memory[1:]))
    assert all(block["compute_s"] > 0 and block["memory_bytes"] > model.weight_bytes() for block in profile)
    assert [block["payload_bits"] for block in profile] == [model.block_payload_bits(i)
                                                            for i in range(NUM_LAYERS)]


def test_regression_with_one_label(tiny_dirs):
    model = BlockModel.from_pretrained(tiny_dirs["roberta"], num_labels=1, seed=0)
    assert model.peft_model.config.problem_type == "regression"
    batch = make_batch(tiny_dirs["roberta"], labels=[4.5, 0.0, 1.0, 3.2])
    grads, loss = model.block_gradients([NUM_LAYERS - 1], batch)
    assert loss > 0 and len(grads) == 4 + 4  # LoRA of one layer + dense and out_proj of the head


def test_user_errors_name_the_field(tiny_dirs):
    with pytest.raises(InputError, match="lora.rank"):
        LoraSpec(rank=0)
    with pytest.raises(InputError, match="lora.head_with"):
        LoraSpec(head_with="first")
    with pytest.raises(InputError, match="lora.dropout"):
        LoraSpec(dropout=1.0)
    with pytest.warns(UserWarning, match="use_dropout"):
        make_model(tiny_dirs["bert"], dropout=0.1)
    model = make_model(tiny_dirs["bert"])
    with pytest.raises(InputError, match="adapter state"):
        model.load_trainable_state({"x": torch.zeros(1)})
    with pytest.raises(InputError, match="labels"):
        model.block_gradients([0], {"input_ids": torch.ones(1, 3, dtype=torch.long)})


def test_packaged_minilm_has_six_equal_blocks_plus_head():
    model = BlockModel.from_pretrained(default_model_path(), num_labels=2, seed=0)
    assert model.num_blocks == 6
    lora_bits = 2 * 2 * 8 * 384 * 32
    head_bits = (384 * 2 + 2) * 32
    assert [model.block_payload_bits(i) for i in range(6)] == [lora_bits] * 5 + [lora_bits + head_bits]
    batch = make_batch(default_model_path())
    grads, loss = model.block_gradients([5], batch)
    assert len(grads) == 6 and loss > 0


@pytest.mark.parametrize("head_with", ["last", "server"])
def test_local_update_trains_the_whole_adapter_and_restores_the_model(tiny_dirs, head_with):
    model = make_model(tiny_dirs["bert"], head_with=head_with)
    perturb(model)
    batch = make_batch(tiny_dirs["bert"])
    before = model.trainable_state()
    delta, loss = local_update(model, [batch, batch, batch], lr=1e-2, weight_decay=0.01)
    assert list(delta) == list(before)  # every block and the head, in model order
    assert all(d.abs().max() > 0 for d in delta.values()) and math.isfinite(loss) and loss > 0
    torch.testing.assert_close(model.trainable_state(), before, rtol=0, atol=0)
    assert all(p.grad is None for p in model.peft_model.parameters())
    assert all(p.requires_grad for p in model.named_trainable_parameters().values())
    assert not any(p.requires_grad for n, p in model.peft_model.named_parameters()
                   if n not in model.named_trainable_parameters())


def test_local_update_without_lora_a_trains_only_b_and_the_head(tiny_dirs):
    model = make_model(tiny_dirs["bert"], head_with="server")
    perturb(model)
    batch = make_batch(tiny_dirs["bert"])
    lora_a = model.lora_a_names()
    assert len(lora_a) == 2 * NUM_LAYERS and all(".lora_A." in n for n in lora_a)
    delta, _ = local_update(model, [batch], optimizer="adamw", lr=1e-3, train_lora_a=False)
    assert set(delta) == set(model.trainable_state()) - set(lora_a)
    assert sum(".lora_B." in n for n in delta) == 2 * NUM_LAYERS
    assert set(model.block_parameter_names(model.head_block)) <= set(delta)


@pytest.mark.parametrize("train_lora_a", [True, False])
def test_one_sgd_step_moves_by_minus_lr_times_the_joint_gradient(tiny_dirs, train_lora_a):
    model = make_model(tiny_dirs["roberta"])
    perturb(model)
    batch = make_batch(tiny_dirs["roberta"])
    grads, joint_loss = model.block_gradients(list(range(NUM_LAYERS)), batch)
    lr = 0.05
    delta, loss = local_update(model, [batch], optimizer="sgd", lr=lr, train_lora_a=train_lora_a)
    assert loss == pytest.approx(joint_loss, rel=1e-6)
    assert set(delta) == {n for n in grads if train_lora_a or ".lora_A." not in n}
    torch.testing.assert_close(delta, {n: -lr * grads[n] for n in delta}, rtol=0, atol=1e-6)


def test_local_update_errors_name_the_argument(tiny_dirs):
    model = make_model(tiny_dirs["bert"])
    batch = make_batch(tiny_dirs["bert"])
    with pytest.raises(InputError, match="optimizer = 'adam'"):
        local_update(model, [batch], optimizer="adam", lr=1e-3)
    with pytest.raises(InputError, match="lr = 0"):
        local_update(model, [batch], lr=0)
    before = model.trainable_state()
    with pytest.raises(InputError, match="batches"):
        local_update(model, iter([]), lr=1e-3)
    torch.testing.assert_close(model.trainable_state(), before, rtol=0, atol=0)
