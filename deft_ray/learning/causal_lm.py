"""A Hugging Face decoder-only causal LM with LoRA, split into one block per decoder layer.

The same :class:`~deft_ray.learning.model.BlockModel`, built with ``AutoModelForCausalLM`` and
peft's ``CAUSAL_LM`` task: block ``i`` is the LoRA of decoder layer ``i`` in model order (Llama,
Qwen2/Qwen3, Mistral, Gemma and Phi-3 ``model.layers.N``, GPT-NeoX ``gpt_neox.layers.N``, OPT
``model.decoder.layers.N``, GPT-2 ``transformer.h.N``). There is no head to train: the LM head
and the embeddings stay frozen with the rest of the backbone (tied or not), so every trainable
parameter is LoRA. The backbone computes in ``lora.backbone_dtype``; peft keeps the LoRA weights,
and so their gradients and the optimizer state, in float32.

Labels are the input ids with ``-100`` wherever no loss is wanted (prompt and padding); the model
shifts them itself, so the loss of a batch is the mean negative log-likelihood of its response tokens.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Mapping

import numpy as np
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from deft_ray.errors import InputError
from deft_ray.learning.causal_batches import IGNORE_INDEX
from deft_ray.learning.lora import LoraSpec, resolve_target_modules
from deft_ray.learning.model import BlockModel, _assign_backbone, quiet_transformers, seeded

class CausalBlockModel(BlockModel):
    """A peft LoRA causal LM whose trainable parameters (LoRA only) are split into blocks."""

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, lora: LoraSpec = LoraSpec(model_kind="causal-lm"), seed: int,
                        use_dropout: bool = False, **_unused) -> CausalBlockModel:
        """Load a pretrained causal LM in ``lora.backbone_dtype`` and add seeded LoRA."""
        with seeded(seed), quiet_transformers():
            base = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=lora.torch_dtype)
        return cls._wrap_causal(base, lora=lora, seed=seed, use_dropout=use_dropout)

    @classmethod
    def from_shared_state(cls, config_path_or_name: str, numpy_state: Mapping[str, np.ndarray], *,
                          lora: LoraSpec = LoraSpec(model_kind="causal-lm"), seed: int,
                          use_dropout: bool = False, **_unused) -> CausalBlockModel:
        """Build the model on the meta device around zero-copy views of ``numpy_state``
        (:func:`~deft_ray.learning.model.backbone_state_numpy`); tied weights are tied again."""
        config = AutoConfig.from_pretrained(config_path_or_name)
        with torch.device("meta"), quiet_transformers():
            base = AutoModelForCausalLM.from_config(config, dtype=lora.torch_dtype)
        _assign_backbone(base, numpy_state)
        return cls._wrap_causal(base, lora=lora, seed=seed, use_dropout=use_dropout)

    @classmethod
    def _wrap_causal(cls, base: torch.nn.Module, *, lora: LoraSpec, seed: int, use_dropout: bool) -> CausalBlockModel:
        if lora.model_kind != "causal-lm":
            lora = dataclasses.replace(lora, model_kind="causal-lm")
        lora = dataclasses.replace(lora, target_modules=resolve_target_modules(lora, base.config.model_type))
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora.rank, lora_alpha=lora.alpha,
                            lora_dropout=lora.dropout, target_modules=list(lora.target_modules))
        with seeded(seed), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")  # GPT-2's Conv1D
            try:
                peft_model = get_peft_model(base, config, autocast_adapter_dtype=True)
            except ValueError as error:
                raise InputError("model.target_modules", list(lora.target_modules),
                                 f"cannot be adapted in this {base.config.model_type} model ({str(error)[:100]})",
                                 "name linear modules found in every decoder layer, or use auto") from None
        for param in peft_model.parameters():  # float32 adapter whatever the backbone's dtype
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        return cls(peft_model, lora=lora, use_dropout=use_dropout)

    def token_loss_sums(self, batch: Mapping[str, torch.Tensor]) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of the batch's labelled tokens and their number,
        without a graph: an evaluation set's loss is the total over the total count."""
        self.peft_model.eval()
        with torch.no_grad():
            logits = self.peft_model(**self._inputs(batch)).logits.float()
        labels = batch["labels"].to(logits.device)
        shifted_logits, shifted_labels = logits[:, :-1], labels[:, 1:]
        total = torch.nn.functional.cross_entropy(shifted_logits.reshape(-1, shifted_logits.shape[-1]),
                                                  shifted_labels.reshape(-1), ignore_index=IGNORE_INDEX,
                                                  reduction="sum")
        return float(total), int((shifted_labels != IGNORE_INDEX).sum())


def is_causal_lm(model_config) -> bool:
    """Whether a Hugging Face config describes a decoder-only causal LM (Llama, GPT-2, ...): its
    architectures end in ``ForCausalLM``/``LMHeadModel``, or, when it names none, its model type
    has a causal-LM class and no masked-LM one (which rules out BERT and RoBERTa)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if getattr(model_config, "is_encoder_decoder", False):
        return False
    architectures = getattr(model_config, "architectures", None) or []
    if architectures:
        return any(name.endswith(("ForCausalLM", "LMHeadModel")) and not name.startswith(("Bert", "Roberta"))
                   for name in architectures)
    model_type = model_config.model_type
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
