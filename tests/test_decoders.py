"""Decoder-only causal LMs as block models: one tiny random configuration per family, built offline.

For every family: the block gradients assemble to the joint gradient (fp32, rtol 1e-5), the
backward pass stops at the lowest block, the adapter round-trips through ``save_pretrained`` /
``PeftModel.from_pretrained`` and generates, and the zero-copy build equals the loaded one.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from deft_ray.errors import InputError
from deft_ray.learning.causal_lm import CausalBlockModel, is_causal_lm
from deft_ray.learning.lora import LoraSpec, layer_list_name
from deft_ray.learning.model import BlockModel, backbone_state_numpy
from deft_ray.learning.tiny_decoders import FAMILIES, char_tokenizer, write_tiny_decoder

NUM_LAYERS = 3
CAUSAL = LoraSpec(model_kind="causal-lm")
#: Where each family keeps its numbered list of decoder layers (the Hugging Face module names).
LAYER_LISTS = {"llama": "model.layers", "qwen2": "model.layers", "qwen3": "model.layers", "mistral": "model.layers",
               "gemma": "model.layers", "phi3": "model.layers", "gpt2": "transformer.h",
               "opt": "model.decoder.layers", "gpt_neox": "gpt_neox.layers"}
#: peft's default LoRA modules per architecture, as its documentation lists them (phi3: deft-ray's own).
AUTO_TARGETS = {"llama": {"q_proj", "v_proj"}, "qwen2": {"q_proj", "v_proj"}, "qwen3": {"q_proj", "v_proj"},
                "mistral": {"q_proj", "v_proj"}, "gemma": {"q_proj", "v_proj"}, "phi3": {"qkv_proj"},
                "gpt2": {"c_attn"}, "opt": {"q_proj", "v_proj"}, "gpt_neox": {"query_key_value"}}
PROMPTS = ["add 2 3\n5", "reverse abc\ncba", "upper qwe\nQWE"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def decoder_dirs(tmp_path_factory) -> dict[str, str]:
    return {family: write_tiny_decoder(tmp_path_factory.mktemp(family), family=family, num_layers=NUM_LAYERS,
                                       seed=1) for family in FAMILIES}


def make_batch(model_dir: str) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    labels = encoded["input_ids"].clone()
    labels[encoded["attention_mask"] == 0] = -100
    labels[:, :4] = -100  # a prompt that carries no loss
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def perturbed(model: BlockModel, seed: int = 3) -> BlockModel:
    """Every LoRA weight random (B starts at zero, which would hide wrong gradients)."""
    generator = torch.Generator().manual_seed(seed)
    model.load_trainable_state({name: torch.randn(t.shape, generator=generator) * 0.2
                                for name, t in model.trainable_state().items()})
    return model


def layers_of(model: BlockModel, family: str) -> torch.nn.ModuleList:
    return model.peft_model.get_base_model().get_submodule(LAYER_LISTS[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_assembled_block_gradients_equal_one_joint_backward(decoder_dirs, family):
    model = perturbed(BlockModel.from_pretrained(decoder_dirs[family], num_labels=0, lora=CAUSAL, seed=7))
    assert isinstance(model, CausalBlockModel) and model.num_blocks == NUM_LAYERS and model.head_block is None
    batch = make_batch(decoder_dirs[family])
    # The oracle: one plain backward of the whole adapter through torch's .grad.
    model.peft_model.zero_grad(set_to_none=True)
    model.loss(batch).backward()
    joint = {name: param.grad.clone() for name, param in model.named_trainable_parameters().items()}
    model.peft_model.zero_grad(set_to_none=True)
    assembled = {}
    for block_idx in range(NUM_LAYERS):
        grads, _ = model.block_gradients([block_idx], batch)
        assembled.update(grads)
    assert set(assembled) == set(joint)
    torch.testing.assert_close(assembled, joint, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in model.peft_model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_are_the_decoder_layers_in_order_and_only_lora_trains(decoder_dirs, family):
    model = BlockModel.from_pretrained(decoder_dirs[family], num_labels=0, lora=CAUSAL, seed=7)
    assert layer_list_name(model.peft_model.get_base_model(), NUM_LAYERS) == LAYER_LISTS[family]
    assert set(model.lora.target_modules) == AUTO_TARGETS[family]
    for block_idx in range(NUM_LAYERS):
        names = model.block_parameter_names(block_idx)
        assert names and all(f"{LAYER_LISTS[family]}.{block_idx}." in n and ".lora_" in n for n in names)
    trainable = {n for n, p in model.peft_model.named_parameters() if p.requires_grad}
    assert trainable == set(model.named_trainable_parameters())
    base = model.peft_model.get_base_model()
    assert not base.get_output_embeddings().weight.requires_grad
    assert not base.get_input_embeddings().weight.requires_grad


@pytest.mark.parametrize("family", FAMILIES)
def test_backward_stops_at_the_lowest_block(decoder_dirs, family):
    model = BlockModel.from_pretrained(decoder_dirs[family], num_labels=0, lora=CAUSAL, seed=7)
    batch = make_batch(decoder_dirs[family])
    needs_grad: dict[int, bool] = {}

    def record(i):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            needs_grad[i] = hidden.requires_grad
        return hook

    handles = [layer.register_forward_hook(record(i)) for i, layer in enumerate(layers_of(model, family))]
    try:
        for lowest in range(NUM_LAYERS):
            model.block_gradients([lowest, NUM_LAYERS - 1], batch)
            assert needs_grad == {i: i >= lowest for i in range(NUM_LAYERS)}
    finally:
        for handle in handles:
            handle.remove()
    saved_bytes = [model.saved_activation_bytes([i], batch) for i in range(NUM_LAYERS)]
    assert all(a > b > 0 for a, b in zip(saved_bytes, saved_bytes[1:]))


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_round_trips_through_peft_and_generates(decoder_dirs, family, tmp_path):
    model = perturbed(BlockModel.from_pretrained(decoder_dirs[family], num_labels=0, lora=CAUSAL, seed=7))
    batch = make_batch(decoder_dirs[family])
    model.save_adapter(str(tmp_path / "adapter"))
    base = AutoModelForCausalLM.from_pretrained(decoder_dirs[family])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = reloaded(**inputs).logits
    torch.testing.assert_close(logits, model.evaluate_logits(batch), rtol=0, atol=0)
    tokenizer = AutoTokenizer.from_pretrained(decoder_dirs[family])
    prompt = tokenizer(["add 2 3\n"], return_tensors="pt")
    out = reloaded.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_state_build_is_zero_copy_and_equals_the_loaded_model(decoder_dirs, family):
    model = BlockModel.from_pretrained(decoder_dirs[family], num_labels=0, lora=CAUSAL, seed=7)
    state = backbone_state_numpy(model)
    for array in state.values():
        array.setflags(write=False)
    shared = BlockModel.from_shared_state(decoder_dirs[family], state, num_labels=0, lora=CAUSAL, seed=7)
    torch.testing.assert_close(shared.trainable_state(), model.trainable_state(), rtol=0, atol=0)
    batch = make_batch(decoder_dirs[family])
    torch.testing.assert_close(shared.evaluate_logits(batch), model.evaluate_logits(batch), rtol=0, atol=0)
    embeddings = shared.peft_model.get_base_model().get_input_embeddings().weight
    assert any(embeddings.data_ptr() == array.ctypes.data for array in state.values())
    assert not any(p.device.type == "meta" for p in shared.peft_model.parameters())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_half_precision_backbone_keeps_a_float32_adapter(decoder_dirs, dtype):
    lora = LoraSpec(model_kind="causal-lm", backbone_dtype=dtype)
    model = BlockModel.from_pretrained(decoder_dirs["qwen2"], num_labels=0, lora=lora, seed=7)
    base = model.peft_model.get_base_model()
    assert base.get_input_embeddings().weight.dtype == getattr(torch, dtype)
    assert all(p.dtype == torch.float32 for p in model.named_trainable_parameters().values())
    grads, loss = model.block_gradients([0], make_batch(decoder_dirs["qwen2"]))
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values()) and loss > 0
    state = backbone_state_numpy(model)  # bfloat16 travels as its bits
    shared = BlockModel.from_shared_state(decoder_dirs["qwen2"], state, num_labels=0, lora=lora, seed=7)
    batch = make_batch(decoder_dirs["qwen2"])
    torch.testing.assert_close(shared.evaluate_logits(batch), model.evaluate_logits(batch), rtol=0, atol=0)


def test_a_decoder_is_told_from_an_encoder(decoder_dirs, tiny_bert):
    assert all(is_causal_lm(AutoConfig.from_pretrained(decoder_dirs[f])) for f in FAMILIES)
    assert not is_causal_lm(AutoConfig.from_pretrained(tiny_bert))


def test_auto_targets_of_bert_are_query_and_value_as_before(tiny_bert):
    auto = BlockModel.from_pretrained(tiny_bert, num_labels=2, lora=LoraSpec(), seed=7)
    explicit = BlockModel.from_pretrained(tiny_bert, num_labels=2, lora=LoraSpec(target_modules=("query", "value")),
                                          seed=7)
    assert auto.lora.target_modules == ("query", "value")
    torch.testing.assert_close(auto.trainable_state(), explicit.trainable_state(), rtol=0, atol=0)


def test_explicit_targets_and_unknown_modules(decoder_dirs):
    model = BlockModel.from_pretrained(decoder_dirs["llama"], num_labels=0, seed=7,
                                       lora=LoraSpec(model_kind="causal-lm", target_modules=("q_proj", "k_proj", "o_proj")))
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in model.block_parameter_names(0)} == {"q_proj", "k_proj", "o_proj"}
    with pytest.raises(InputError, match="target_modules"):
        BlockModel.from_pretrained(decoder_dirs["llama"], num_labels=0, seed=7,
                                   lora=LoraSpec(model_kind="causal-lm", target_modules=("query",)))


def test_char_tokenizer_round_trips_text_and_renders_chats():
    tokenizer = char_tokenizer()
    text = "reverse qwert\nTREWQ 12+3!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert len(tokenizer(text)["input_ids"]) == len(text)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "add 2 3"}], add_generation_prompt=True,
                                             tokenize=False)
    assert rendered == "<|user|>add 2 3\n<|assistant|>"
    assert tokenizer(rendered)["input_ids"][0] == tokenizer.convert_tokens_to_ids("<|user|>")


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "qwen2"])
def test_each_saved_folder_loads_the_same_tokenizer(decoder_dirs, family):
    """(transformers' AutoTokenizer rebuilds a qwen2 folder's tokenizer as Qwen2Tokenizer, which
    splits on spaces: its char tokenizer loses them, which no model test depends on.)"""
    loaded = AutoTokenizer.from_pretrained(decoder_dirs[family])
    text = "<|user|>sort dcba\n<|assistant|>abcd<eos>"
    assert loaded(text)["input_ids"] == char_tokenizer()(text)["input_ids"]
    assert loaded.chat_template == char_tokenizer().chat_template


def test_a_decoder_profile_counts_the_whole_frozen_backbone(decoder_dirs):
    from deft_ray.learning.profiling import measure_profile

    profile = measure_profile(decoder_dirs["gpt2"], batch_size=2, seq_length=24, repeats=1, threads=1)
    assert profile["lora"] == {"r": 8, "alpha": 16, "targets": ["c_attn"], "model_kind": "causal-lm"}
    assert profile["seq"] == 24 and len(profile["blocks"]) == NUM_LAYERS
    weights = sum(p.numel() * p.element_size() for p in AutoModelForCausalLM.from_pretrained(decoder_dirs["gpt2"]).parameters())
    memory = [block["memory_bytes"] for block in profile["blocks"]]
    assert all(a > b > weights for a, b in zip(memory, memory[1:]))
