"""Centralised LoRA fine-tuning: every block trained at once on batches from the whole training set.

This is the baseline a cooperative run is compared with (``benchmarks/accuracy.py``,
``benchmarks/llm.py``): the same model, adapter and optimizer, one process, no devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def train_centrally(model: Any, train_columns: dict[str, np.ndarray], optimizer: Any, *, steps: int,
                    batch_size: int, seed: int, schedule: Any = None) -> None:
    """Take ``steps`` optimizer steps of ``model``'s whole adapter, each on a seeded batch of
    ``batch_size`` examples drawn from all of ``train_columns``; ``schedule`` (a learning-rate
    scheduler of ``optimizer``) steps after each."""
    from deft_ray.learning.batches import BatchStream, TensorTable

    stream = BatchStream(TensorTable(train_columns), np.arange(len(train_columns["labels"])),
                         batch_size=batch_size, seed=seed)
    blocks = list(range(model.num_blocks))
    for _ in range(steps):
        gradients, _ = model.block_gradients(blocks, stream.next_batch())
        named = model.named_trainable_parameters()
        for name, gradient in gradients.items():
            named[name].grad = gradient
        optimizer.step()
        if schedule is not None:
            schedule.step()
        optimizer.zero_grad(set_to_none=True)
