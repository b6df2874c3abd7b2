"""Federated LoRA baselines: every participating device trains the whole adapter on its own data.

These are not DEFT schemes: no block is split off to a device. Each device that can hold the whole
adapter runs ``E`` local optimizer steps over every block (all LoRA layers and the classification
head) and uploads the trained weights' change; the server averages the uploads. They share the
harness, the cost model and :func:`~deft_ray.planners.plan.evaluate` with CRUNCH and JBBA, so
the ledger compares a DEFT round with a federated round on the same devices and channel.

Cost model (docs/method.md, "Federated baselines" and "Multiblock"): training a set of blocks costs what its lowest block
costs, so one local step over all blocks takes ``compute_scale * compute_s_0`` and needs
``memory_bytes_0``; ``E`` steps take ``E`` times that. The upload is the sum of the trained
blocks' payloads. The plan lists every block under every participating device, and is scored with
``evaluate(..., replicated=True)`` on :meth:`FedAvg.cost_instance`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from deft_ray.errors import InfeasibleError, InputError
from deft_ray.planners.bandwidth import equalize_bandwidth
from deft_ray.planners.instance import Instance
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme


@register_scheme
class FedAvg(Scheme):
    """Federated averaging of a LoRA adapter, as FedIT does.

    FedIT (Zhang et al., "Towards Building the Federated GPT: Federated Instruction Tuning",
    ICASSP 2024, https://arxiv.org/abs/2305.05644) fine-tunes LoRA with FedAvg: every client
    trains the whole adapter locally and the server averages the adapters.

    Problem: given the devices and the total uplink bandwidth ``B``, let every device whose memory
    holds the whole adapter take part, and split ``B`` among the participants so the round, the
    largest ``E * compute_scale_k * compute_s_0 + sum_n payload_bits_n / R_k(B_k)``, ends as early
    as possible. Devices that cannot hold block 0 (the dearest) sit out, which the plan notes.

    The bandwidth split is optimal for that fixed participation
    (:func:`~deft_ray.planners.bandwidth.equalize_bandwidth`): every participant finishes at the
    same time and the shares sum to ``B`` (docs/method.md, "Federated baselines").

    Guarantee: the optimal round latency for that participation.

    Complexity: O(K N) to build the cost instance and check memory, plus O(K I) for the bandwidth
    root search (I ~ 10-40 iterations).

    Args:
        local_steps: ``E``, the local optimizer steps each device runs per round (default: 1).

    Raises:
        InputError: ``local_steps`` is not a positive integer.
    """

    name = "fedavg"
    summary = "federated: every device that fits trains all blocks for E local steps, optimal bandwidth"
    one_block_per_device = False
    replicates_blocks = True

    def __init__(self, local_steps: int = 1):
        if isinstance(local_steps, bool) or not isinstance(local_steps, (int, np.integer)) or local_steps < 1:
            raise InputError("federated.local_steps", local_steps, "must be a positive integer",
                             "use e.g. 1 (one local step per round)")
        self.local_steps = int(local_steps)

    def cost_instance(self, instance: Instance) -> Instance:
        """``instance`` with every block's ``compute_s`` multiplied by ``local_steps``: each local
        step over all blocks costs as much as training the lowest block (the backward pass reaches
        layer 0)."""
        if self.local_steps == 1:
            return instance
        blocks = tuple(replace(block, compute_s=block.compute_s * self.local_steps) for block in instance.blocks)
        return replace(instance, blocks=blocks)

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        """Every device that holds the whole adapter takes all blocks; the band is split optimally.

        Raises:
            InfeasibleError: no device's memory budget holds the whole adapter.
        """
        needed = float(instance.block_memory_bytes().max())
        budgets = instance.memory_budgets()
        participants = np.flatnonzero(budgets >= needed)
        if participants.size == 0:
            best = int(np.argmax(budgets))
            raise InfeasibleError(
                f"{self.name}: training every block needs {needed:.4g} bytes but the largest budget is "
                f"{budgets[best]:.4g} bytes (device {instance.devices[best].name!r}); raise a device's "
                f"memory_bytes to at least {needed:.4g} or use a DEFT scheme, which splits the blocks")
        compute = instance.compute_scales()[participants] * instance.block_compute_s().max()
        payload = np.full(participants.size, instance.block_payload_bits().sum())
        _, shares = equalize_bandwidth(instance.channel().take(participants[None, :]), compute[None, :],
                                       payload[None, :], instance.bandwidth_hz)
        bandwidth = np.zeros(instance.num_devices)
        bandwidth[participants] = shares[0]
        all_blocks = tuple(range(instance.num_blocks))
        return Allocation(blocks_of_device={int(k): all_blocks for k in participants},
                          bandwidth_hz=bandwidth, diagnostics=self._notes(instance, participants, needed))

    def _notes(self, instance: Instance, participants: np.ndarray, needed: float) -> tuple[str, ...]:
        absent = sorted(set(range(instance.num_devices)) - set(participants.tolist()))
        if not absent:
            return ()
        names = [instance.devices[k].name for k in absent]
        return ((f"{self.name}: {len(absent)} device(s) sit out, their memory is below the {needed:.4g} bytes "
                 f"the whole adapter needs: {', '.join(names)}"),)


@register_scheme
class FfaLora(FedAvg):
    """FFA-LoRA: federated LoRA with the A matrices frozen; only B (and the head) train and travel.

    FFA-LoRA (Sun, Li, Li, Ding, "Improving LoRA in Privacy-preserving Federated Learning",
    ICLR 2024, https://arxiv.org/abs/2403.12313) keeps every LoRA ``A`` at its random
    initialisation, so averaging the ``B`` matrices is exact averaging of the updates ``B A``.

    Same problem, participation and bandwidth split as :class:`FedAvg`; the cost instance also
    halves every block's ``payload_bits``. Assumption: a block's payload is its LoRA ``A`` and
    ``B``, of the same size (true for query/value LoRA, where ``A`` is ``r x d`` and ``B`` is
    ``d x r``). The head, which still travels whole, is counted in the last block's payload and
    halved with it: an undercount of its few bits (``hidden x labels``). Compute is kept as in
    FedAvg: the backward pass still reaches layer 0 to reach its ``B``.
    """

    name = "ffa-lora"
    summary = "federated with LoRA A frozen: only B and the head train and travel (half the upload)"
    trains_lora_a = False

    def cost_instance(self, instance: Instance) -> Instance:
        """:meth:`FedAvg.cost_instance` with every block's ``payload_bits`` halved."""
        instance = super().cost_instance(instance)
        blocks = tuple(replace(block, payload_bits=block.payload_bits / 2) for block in instance.blocks)
        return replace(instance, blocks=blocks)
