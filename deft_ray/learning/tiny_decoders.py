"""Small decoder-only models built offline: a character tokenizer and random configs per family.

No decoder weights or tokenizer can be downloaded where deft-ray is tested, so tests, the
``builtin:tiny-decoder`` model and ``benchmarks/llm.py`` build their own: :func:`char_tokenizer`
(one token per printable ASCII character, with a chat template) and :func:`write_tiny_decoder`,
a randomly initialised model of one of the :data:`FAMILIES` saved with that tokenizer, which
loads like a hub checkpoint with ``AutoTokenizer`` and ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Callable

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>")
CHARACTERS = tuple(string.printable[:95]) + ("\n",)
"""Printable ASCII (space to ``~``) and newline."""
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
"""Each turn as ``<|role|>content`` and a newline; the answer follows ``<|assistant|>``."""


def char_tokenizer():
    """A ``PreTrainedTokenizerFast`` with one token per character, ``<pad>`` (id 0), ``<eos>``,
    ``<unk>`` and the chat-role tokens, and :data:`CHAT_TEMPLATE`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", additional_special_tokens=list(SPECIAL_TOKENS[3:]))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _llama_like(config_class: Callable[..., Any], **extra) -> Callable[..., Any]:
    def build(*, vocab_size, hidden_size, num_layers, **ids):
        return config_class(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                            num_attention_heads=4, num_key_value_heads=2, intermediate_size=2 * hidden_size,
                            max_position_embeddings=256, **ids, **extra)
    return build


def _configs() -> dict[str, Callable[..., Any]]:
    import transformers as tf

    return {
        "llama": _llama_like(tf.LlamaConfig, tie_word_embeddings=False),
        "qwen2": _llama_like(tf.Qwen2Config, tie_word_embeddings=True),
        "qwen3": _llama_like(tf.Qwen3Config, head_dim=8, tie_word_embeddings=True),
        "mistral": _llama_like(tf.MistralConfig, head_dim=8, sliding_window=None),
        "gemma": _llama_like(tf.GemmaConfig, head_dim=8),
        "phi3": lambda *, vocab_size, hidden_size, num_layers, **ids: tf.Phi3Config(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=256,
            original_max_position_embeddings=256, **ids),
        "gpt2": lambda *, vocab_size, hidden_size, num_layers, **ids: tf.GPT2Config(
            vocab_size=vocab_size, n_embd=hidden_size, n_layer=num_layers, n_head=4, n_positions=256,
            bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"]),
        "opt": lambda *, vocab_size, hidden_size, num_layers, **ids: tf.OPTConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=4,
            ffn_dim=2 * hidden_size, word_embed_proj_dim=hidden_size, max_position_embeddings=256, **ids),
        "gpt_neox": lambda *, vocab_size, hidden_size, num_layers, **ids: tf.GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=4,
            intermediate_size=2 * hidden_size, max_position_embeddings=256, rotary_pct=0.5, **ids),
    }


FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "phi3", "gpt2", "opt", "gpt_neox")
"""Model types :func:`write_tiny_decoder` builds (Hugging Face ``model_type`` names)."""


def tiny_decoder_config(family: str, *, num_layers: int = 3, hidden_size: int = 32):
    """The Hugging Face config of a small ``family`` decoder for :func:`char_tokenizer`'s vocabulary."""
    from deft_ray.errors import UnknownNameError

    if family not in FAMILIES:
        raise UnknownNameError("decoder family", family, list(FAMILIES))
    tokenizer = char_tokenizer()
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.eos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    config = _configs()[family](vocab_size=len(tokenizer), hidden_size=hidden_size, num_layers=num_layers, **ids)
    config.architectures = [_architecture(family)]
    return config


def write_tiny_decoder(path: str | Path, *, family: str = "llama", num_layers: int = 3, hidden_size: int = 32,
                       seed: int = 0) -> str:
    """Save a randomly initialised ``family`` decoder (seeded) with :func:`char_tokenizer` to ``path``."""
    from transformers import AutoModelForCausalLM

    from deft_ray.learning.model import quiet_transformers, seeded

    config = tiny_decoder_config(family, num_layers=num_layers, hidden_size=hidden_size)
    with seeded(seed), quiet_transformers():
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(str(path))
    char_tokenizer().save_pretrained(str(path))
    return str(path)


def _architecture(family: str) -> str:
    return {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
            "mistral": "MistralForCausalLM", "gemma": "GemmaForCausalLM", "phi3": "Phi3ForCausalLM",
            "gpt2": "GPT2LMHeadModel", "opt": "OPTForCausalLM", "gpt_neox": "GPTNeoXForCausalLM"}[family]
