"""LoRA settings, and how a model's trainable parameters split into one block per layer.

Block ``i`` is the LoRA of transformer layer ``i`` in model order (block 0 next to the embeddings);
see docs/method.md, "Cost model".
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from deft_ray.errors import InputError

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
LORA_A_PART = re.compile(r"\.lora_A\.")
"""Matches the names of LoRA ``A`` matrices (frozen by FFA-LoRA)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraSpec:
    """LoRA settings and where the classification head belongs."""

    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    dropout: float = 0.0
    """LoRA dropout; takes effect only with ``use_dropout=True``."""
    target_modules: tuple[str, ...] = ("query", "value")
    """Module names that get LoRA in every layer."""
    head_with: Literal["last", "server"] = "last"
    """"last": the head is part of the last block; "server": it is the extra block ``num_blocks``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise InputError("lora.rank", self.rank, "must be a positive integer", "use e.g. 8")
        if not self.alpha > 0:
            raise InputError("lora.alpha", self.alpha, "must be positive", "use e.g. 16")
        if not 0 <= self.dropout < 1:
            raise InputError("lora.dropout", self.dropout, "must lie in [0, 1)", "use 0.0 or 0.1")
        if not self.target_modules or not all(isinstance(m, str) for m in self.target_modules):
            raise InputError("lora.target_modules", self.target_modules, "must be module names",
                             'use e.g. ["query", "value"]')
        if self.head_with not in ("last", "server"):
            raise InputError("lora.head_with", self.head_with, "is not a valid place for the head",
                             'use "last" or "server"')


def split_blocks(names: list[str], num_layers: int, lora: LoraSpec) -> list[list[str]]:
    blocks: list[list[str]] = [[] for _ in range(num_layers)]
    head = []
    for name in names:
        match = _LAYER_INDEX.search(name)
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
    else:
        blocks.append(head)
    return blocks


