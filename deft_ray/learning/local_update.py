"""A federated client's local training: E optimizer steps over the whole adapter, returning its change.

This is what a device does in a round of the federated baselines (docs/method.md, "Federated
baselines"); the DEFT schemes use :meth:`BlockModel.block_gradients` instead.
"""

from __future__ import annotations

import statistics
from typing import Iterable, Mapping

import torch

from deft_ray.errors import InputError
from deft_ray.learning.model import BlockModel

LOCAL_OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def local_update(model: BlockModel, batches: Iterable[Mapping[str, torch.Tensor]], *, optimizer: str = "adamw",
                 lr: float, weight_decay: float = 0.0, train_lora_a: bool = True
                 ) -> tuple[dict[str, torch.Tensor], float]:
    """Train the whole adapter locally, one optimizer step per batch, as a federated client does.

    A fresh ``optimizer`` ("adamw" or "sgd") steps every block and the head (all of
    :meth:`BlockModel.named_trainable_parameters`), minus the LoRA ``A`` matrices when ``train_lora_a`` is
    false (FFA-LoRA). The model is then restored to its state before the call, so a device can
    keep serving from it; no ``.grad`` is left behind.

    Returns:
        ``(delta, mean_loss)``: ``new - old`` for exactly the trained parameters, in model
        order, and the mean of the losses computed before each step.

    Raises:
        InputError: an unknown optimizer, a non-positive ``lr``, a negative ``weight_decay``
            or no batches.
    """
    if optimizer not in LOCAL_OPTIMIZERS:
        raise InputError("optimizer", optimizer, "is not a local optimizer", f"use one of {sorted(LOCAL_OPTIMIZERS)}")
    if not lr > 0:
        raise InputError("lr", lr, "must be positive", "use e.g. 1e-4 for adamw")
    if not weight_decay >= 0:
        raise InputError("weight_decay", weight_decay, "must not be negative", "use 0.0 or e.g. 0.01")
    frozen = set() if train_lora_a else set(model.lora_a_names())
    names = [n for n in model.parameter_names_of(range(model.num_trained_blocks)) if n not in frozen]
    params = [model.named_trainable_parameters()[n] for n in names]
    before = model.trainable_state()
    local_optimizer = LOCAL_OPTIMIZERS[optimizer](params, lr=lr, weight_decay=weight_decay)
    losses = []
    try:
        with model.trainable_only(names):
            for batch in batches:
                loss = model.loss(batch)
                for param, grad in zip(params, torch.autograd.grad(loss, params)):
                    param.grad = grad
                local_optimizer.step()
                losses.append(float(loss.detach()))
        if not losses:
            raise InputError("batches", [], "is empty", "give at least one batch per local update")
        delta = {n: model.named_trainable_parameters()[n].detach() - before[n] for n in names}
    finally:
        for param in params:
            param.grad = None
        model.load_trainable_state(before)
    return delta, statistics.fmean(losses)

