"""The interface every planning scheme implements, and the allocation it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from deft_ray.planners.instance import Instance


@dataclass(frozen=True, slots=True)
class Allocation:
    """What a scheme decides, by device index: the blocks of each involved device, and the
    bandwidth of every device (``(K,)``, zero for devices that take no block)."""

    blocks_of_device: Mapping[int, tuple[int, ...]]
    bandwidth_hz: np.ndarray
    diagnostics: tuple[str, ...] = ()


class Scheme(ABC):
    """A planning scheme: a pure function from an :class:`Instance` to an :class:`Allocation`.

    A subclass sets ``name`` (the registry key), ``summary`` (one line for ``deft-ray plan``),
    ``one_block_per_device`` (whether it solves the paper's matching, where each device takes at
    most one block so ``K >= N`` is needed) and ``replicates_blocks`` (whether several devices train
    the same block, as in federated learning), and implements :meth:`allocate`. The instance it
    gets is already monotone in depth (:func:`~deft_ray.planners.feasibility.make_monotone`), mapped
    through :meth:`cost_instance`, without devices that cannot finish a block in finite time, and
    feasible for the matching when ``one_block_per_device`` is
    set.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    """Old names the registry also accepts for this scheme."""
    one_block_per_device: ClassVar[bool] = True
    replicates_blocks: ClassVar[bool] = False
    trains_lora_a: ClassVar[bool] = True
    """Whether devices train the LoRA A matrices (FFA-LoRA freezes them)."""
    plans_energy_budgets: ClassVar[bool] = False
    """Whether the scheme keeps devices within their ``energy_budget_j`` (crunch, jbba, exact)."""

    def cost_instance(self, instance: Instance) -> Instance:
        """The instance this scheme's round is planned and scored on (default: ``instance``).

        A scheme whose round costs differ from one DEFT iteration per block (several local steps,
        a smaller upload) returns the instance with those costs.
        """
        return instance

    @abstractmethod
    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        """Decide the blocks and bandwidth of every device for one round."""


def matching_allocation(device_of_block: np.ndarray, bandwidth_hz: np.ndarray,
                        diagnostics: tuple[str, ...] = ()) -> Allocation:
    """An :class:`Allocation` from a matching given as ``device_of_block[n] = k``."""
    return Allocation(
        blocks_of_device={int(k): (int(n),) for n, k in enumerate(device_of_block)},
        bandwidth_hz=np.asarray(bandwidth_hz, dtype=float),
        diagnostics=diagnostics,
    )
