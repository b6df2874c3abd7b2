"""Round kinds: what differs between the DEFT schemes' rounds and the federated baselines' rounds.

The coordinator's round (:meth:`~deft_ray.runtime.coordinator.Coordinator.run_round`) is the same
for every scheme; its scheme supplies a :class:`RoundKind` that builds the work orders, says which
blocks a failed device leaves uncovered, and turns the uploads into the adapter's next state:

- :class:`BlockAssembly` (crunch, jbba, exact, the baselines, multiblock): each device computes
  the gradients of its blocks on one batch; every block arrives exactly once, the gradients are
  assembled and the server's optimizer steps (docs/method.md, "Problem 1: block allocation at given bandwidth").
- :class:`LocalUpdateAveraging` (fedavg, ffa-lora): each device trains the whole adapter for E
  local steps and uploads the change; the server adds the mean change, weighted by the devices'
  numbers of examples (docs/method.md,
  "Federated baselines").
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from deft_ray.errors import DeftRayError
from deft_ray.planners import Instance, Plan, Scheme
from deft_ray.runtime.records import BlockGradientsOrder, BlockUpload, LocalUpdateOrder, WorkOrder


class RoundError(DeftRayError):
    """A round could not complete.

    Example scenario: a device's upload did not arrive within ``round_timeout_s``.
    """

    exit_code = 1


class RoundKind(ABC):
    """How one kind of round turns a plan into work orders and uploads into an update."""

    steps_server_optimizer: bool = True
    """Whether :meth:`apply` steps the server's optimizer (and so its learning-rate schedule)."""

    @abstractmethod
    def order(self, round_idx: int, blocks: tuple[int, ...], *, bandwidth_hz: float, rate_bps: float,
              block_compute_s: float, profile_compute_s: float) -> WorkOrder:
        """A device's order; ``block_compute_s`` is its emulated compute time for its lowest block,
        ``profile_compute_s`` the profile's for that block (the host's cost)."""

    @abstractmethod
    def uncovered(self, lost_blocks: Sequence[int], accepted: Sequence[BlockUpload]) -> list[int]:
        """Blocks that must be recomputed when ``lost_blocks`` were lost and ``accepted`` arrived."""

    @abstractmethod
    def apply(self, model: Any, optimizer: Any, uploads: Sequence[BlockUpload], server_batch: Any) -> float:
        """Update the model from the round's uploads; return the mean of the devices' losses.

        ``server_batch`` is a batch for the server-side head (``head_with: server``), else ``None``.
        """

    def work_orders(self, instance: Instance, plan: Plan, round_idx: int) -> dict[str, WorkOrder]:
        """Every planned device's order: its blocks, bandwidth, uplink rate and compute time."""
        names = instance.device_names
        bandwidth = np.array([plan.bandwidth_hz.get(name, 0.0) for name in names])
        rates = instance.channel().rate_bps(bandwidth)
        compute = instance.block_compute_s()
        orders = {}
        for name, blocks in plan.assignment.items():
            k = names.index(name)
            lowest_s = float(compute[list(blocks)].max())
            orders[name] = self.order(round_idx, tuple(blocks), bandwidth_hz=float(bandwidth[k]),
                                      rate_bps=float(rates[k]),
                                      block_compute_s=float(instance.devices[k].compute_scale * lowest_s),
                                      profile_compute_s=lowest_s)
        return orders


class BlockAssembly(RoundKind):
    """DEFT: every block's gradient from exactly one device, assembled into one optimizer step."""

    def order(self, round_idx, blocks, *, bandwidth_hz, rate_bps, block_compute_s, profile_compute_s):
        return BlockGradientsOrder(round_idx=round_idx, blocks=blocks, bandwidth_hz=bandwidth_hz, rate_bps=rate_bps,
                                   planned_compute_s=block_compute_s, profile_compute_s=profile_compute_s)

    def uncovered(self, lost_blocks, accepted):
        return sorted(set(lost_blocks))

    def apply(self, model, optimizer, uploads, server_batch):
        import torch

        counts = np.zeros(model.num_blocks, dtype=int)
        for upload in uploads:
            counts[list(upload.blocks)] += 1
        if np.any(counts != 1):
            raise RoundError(f"round {uploads[0].round_idx}: block gradient counts {counts.tolist()}, "
                             "every block must arrive exactly once")
        parameters = model.named_trainable_parameters()
        optimizer.zero_grad(set_to_none=True)
        for upload in uploads:
            for name, gradient in upload.tensors.items():
                parameters[name].grad = torch.from_numpy(np.array(gradient)).to(parameters[name].device)
        if model.head_block is not None:  # head_with="server": the server trains the head itself
            head, _ = model.block_gradients([model.head_block], server_batch)
            for name, gradient in head.items():
                parameters[name].grad = gradient
        missing = [name for name, p in parameters.items() if p.grad is None]
        assert not missing, f"no gradient for {missing[:3]}"
        optimizer.step()
        return float(np.mean([upload.loss for upload in uploads]))


class LocalUpdateAveraging(RoundKind):
    """Federated: each device's E local steps over the whole adapter, averaged with weights
    proportional to the devices' numbers of training examples (FedAvg, McMahan et al. 2017; equal
    weights when the partitions are equal in size)."""

    steps_server_optimizer = False

    def __init__(self, *, local_steps: int, train_lora_a: bool):
        self.local_steps = local_steps
        self.train_lora_a = train_lora_a

    def order(self, round_idx, blocks, *, bandwidth_hz, rate_bps, block_compute_s, profile_compute_s):
        return LocalUpdateOrder(round_idx=round_idx, blocks=blocks, bandwidth_hz=bandwidth_hz, rate_bps=rate_bps,
                                planned_compute_s=block_compute_s * self.local_steps,
                                profile_compute_s=profile_compute_s * self.local_steps, local_steps=self.local_steps,
                                train_lora_a=self.train_lora_a)

    def uncovered(self, lost_blocks, accepted):
        return [] if accepted else sorted(set(lost_blocks))  # any update covers every block

    def apply(self, model, optimizer, uploads, server_batch):
        """Every parameter the devices trained moves by the mean of their changes, weighted by
        their ``num_examples``; the others (FFA-LoRA's A) stay."""
        import torch

        if not uploads:
            raise RoundError("a federated round ended with no device update")
        assert all(upload.num_examples > 0 for upload in uploads), "an update without its number of examples"
        weights = np.array([upload.num_examples for upload in uploads], dtype=float)
        parameters = model.named_trainable_parameters()
        with torch.no_grad():
            for name in uploads[0].tensors:
                changes = [upload.tensors[name] for upload in uploads]
                mean = np.average(changes, axis=0, weights=weights).astype(changes[0].dtype)
                parameters[name].add_(torch.from_numpy(mean).to(parameters[name].device))
        return float(np.mean([upload.loss for upload in uploads]))


def restore_upload(upload: BlockUpload) -> BlockUpload:
    """``upload`` with its tensors back in float32 (``network.upload_dtype``), as the server
    assembles or averages them."""
    from deft_ray.learning.compression import restore

    if upload.dtype == "float32":
        return upload
    return dataclasses.replace(upload, tensors=restore(upload.tensors, upload.dtype, upload.scales),
                               dtype="float32", scales={})


def round_kind_of(scheme: Scheme) -> RoundKind:
    """The round kind a scheme's plans are carried out with: a scheme that replicates blocks over
    devices (federated) averages local updates; every other scheme assembles block gradients."""
    if scheme.replicates_blocks:
        return LocalUpdateAveraging(local_steps=getattr(scheme, "local_steps", 1), train_lora_a=scheme.trains_lora_a)
    return BlockAssembly()
