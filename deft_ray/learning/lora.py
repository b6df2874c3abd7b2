"""LoRA settings, and how a model's trainable parameters split into one block per layer.

Block ``i`` is the LoRA of transformer layer ``i`` in model order (block 0 next to the embeddings);
see docs/method.md, "Cost model". The layers are the model's numbered list of transformer layers
(``encoder.layer.N`` in BERT, ``layers.N`` in Llama, Qwen, Mistral, Gemma, Phi-3 and GPT-NeoX,
``decoder.layers.N`` in OPT, ``h.N`` in GPT-2), found by :func:`layer_list_name`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Literal

from deft_ray.errors import InputError

if TYPE_CHECKING:
    import torch

LORA_A_PART = re.compile(r"\.lora_A\.")
"""Matches the names of LoRA ``A`` matrices (frozen by FFA-LoRA)."""

AUTO = "auto"
"""``target_modules`` value that takes peft's per-architecture defaults (:func:`resolve_target_modules`)."""

EXTRA_TARGET_MODULES = {"phi3": ("qkv_proj",)}
"""Architectures peft has no LoRA default for, and the modules deft-ray adapts in them."""

BACKBONE_DTYPES = ("float32", "bfloat16", "float16")
MODEL_KINDS = ("sequence-classifier", "causal-lm")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraSpec:
    """LoRA settings, where the classification head belongs, and what kind of model they adapt."""

    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    dropout: float = 0.0
    """LoRA dropout; takes effect only with ``use_dropout=True``."""
    target_modules: tuple[str, ...] | str = AUTO
    """Module names that get LoRA in every layer, or ``"auto"`` for peft's default of the architecture."""
    head_with: Literal["last", "server"] = "last"
    """"last": the head is part of the last block; "server": it is the extra block ``num_blocks``."""
    model_kind: Literal["sequence-classifier", "causal-lm"] = "sequence-classifier"
    """A sequence classifier with a fresh head (BERT family), or a decoder-only causal LM (no head)."""
    backbone_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute dtype of the frozen backbone; LoRA weights and their gradients stay float32."""

    def __post_init__(self) -> None:
        if self.target_modules != AUTO:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise InputError("lora.rank", self.rank, "must be a positive integer", "use e.g. 8")
        if not self.alpha > 0:
            raise InputError("lora.alpha", self.alpha, "must be positive", "use e.g. 16")
        if not 0 <= self.dropout < 1:
            raise InputError("lora.dropout", self.dropout, "must lie in [0, 1)", "use 0.0 or 0.1")
        if self.target_modules != AUTO and (not self.target_modules
                                            or not all(isinstance(m, str) for m in self.target_modules)):
            raise InputError("lora.target_modules", self.target_modules, "must be module names or 'auto'",
                             'use "auto" or e.g. ["q_proj", "v_proj"]')
        if self.head_with not in ("last", "server"):
            raise InputError("lora.head_with", self.head_with, "is not a valid place for the head",
                             'use "last" or "server"')
        if self.model_kind not in MODEL_KINDS:
            raise InputError("lora.model_kind", self.model_kind, "is not a model kind", f"use one of {MODEL_KINDS}")
        if self.backbone_dtype not in BACKBONE_DTYPES:
            raise InputError("model.dtype", self.backbone_dtype, "is not a backbone dtype",
                             f"use one of {', '.join(BACKBONE_DTYPES)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.backbone_dtype)


def resolve_target_modules(lora: LoraSpec, model_type: str) -> tuple[str, ...]:
    """The modules LoRA adapts in a model of ``model_type`` (``config.model_type``): the explicit
    list, or for ``"auto"`` peft's default for the architecture (``query``/``value`` for BERT and
    RoBERTa, ``q_proj``/``v_proj`` for Llama, Qwen, Mistral, Gemma and OPT, ``c_attn`` for GPT-2,
    ``query_key_value`` for GPT-NeoX), or :data:`EXTRA_TARGET_MODULES` where peft has none."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if lora.target_modules != AUTO:
        return tuple(lora.target_modules)
    targets = PEFT_DEFAULTS.get(model_type) or EXTRA_TARGET_MODULES.get(model_type)
    if not targets:
        raise InputError("model.target_modules", AUTO, f"peft has no default LoRA modules for {model_type!r} models",
                         "list the attention projections to adapt, e.g. [q_proj, v_proj]")
    return tuple(targets)


def layer_list_name(model: torch.nn.Module, num_layers: int) -> str:
    """The dotted name of the model's numbered list of transformer layers: the first
    ``ModuleList`` holding ``num_layers`` modules (``model.layers``, ``transformer.h``, ...)."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers:
            return name
    raise InputError("model", type(model).__name__, f"has no list of {num_layers} transformer layers",
                     "use a model whose layers form a numbered list (encoder.layer.N, layers.N, h.N)")


def split_blocks(names: list[str], num_layers: int, lora: LoraSpec, *, layers: str) -> list[list[str]]:
    """Trainable parameter ``names`` grouped into one block per layer of the list ``layers``
    (:func:`layer_list_name`), in model order; the head joins the last block or its own."""
    index = re.compile(rf"(?:^|\.){re.escape(layers)}\.(\d+)\.")
    blocks: list[list[str]] = [[] for _ in range(num_layers)]
    head = []
    for name in names:
        match = index.search(name)
        if match:
            blocks[int(match.group(1))].append(name)
        else:
            assert "modules_to_save" in name, f"trainable parameter {name} is neither LoRA nor head"
            head.append(name)
    empty = [i for i, block in enumerate(blocks) if not block]
    if empty:
        raise InputError("lora.target_modules", lora.target_modules, f"leave layers {empty} without LoRA",
                         "name modules found in every transformer layer, e.g. ('query', 'value')")
    if lora.head_with == "last":
        blocks[-1].extend(head)
    elif head:
        blocks.append(head)
    return blocks
