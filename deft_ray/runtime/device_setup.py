"""What every device needs besides its own spec, in a module of its own: a device process that
unpickles it imports this and the clock, not the run's builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deft_ray.edge.clock import Clock


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    """What every device needs besides its own spec: how to build the model and its batches."""

    model_path: str
    num_labels: int
    lora: Any
    """A :class:`deft_ray.learning.lora.LoraSpec`."""
    seed: int
    batch_size: int
    clock: Clock
    block_memory_bytes: tuple[float, ...]
    """The profile's memory need of each block, to refuse assignments over the budget."""
    optimizer: Any
    """The run's :class:`~deft_ray.config.OptimizerConfig`: local optimizer of the federated schemes."""
    torch_threads: int = 1
    upload_dtype: str = "float32"
    """``network.upload_dtype``: how the device sends its tensors."""
