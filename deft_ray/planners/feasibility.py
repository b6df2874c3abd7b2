"""What a planner may rely on before it plans: a monotone profile, finite costs, and a feasible
matching (docs/method.md, "Cost model" and "Problem 1: block allocation at given bandwidth").

- :func:`make_monotone` raises a noisy profile's costs to be non-increasing in depth.
- :func:`usable_devices` checks the numbers are in range and drops the devices that cannot finish
  any block in finite time, so no planner ever chooses one.
- :func:`check_matching_feasible` and :func:`check_every_block_fits` say, with the reason, when no
  allocation of the scheme's kind exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from deft_ray.errors import InfeasibleError, InputError
from deft_ray.planners.instance import BlockCost, Instance


def make_monotone(instance: Instance) -> tuple[Instance, tuple[str, ...]]:
    """Return the instance with compute and memory non-increasing in the block index (see
    :func:`make_blocks_monotone`), and the diagnostics saying what was raised."""
    blocks, notes = make_blocks_monotone(instance.blocks)
    return (replace(instance, blocks=blocks), notes) if notes else (instance, ())


def make_blocks_monotone(blocks: Sequence[BlockCost]) -> tuple[tuple[BlockCost, ...], tuple[str, ...]]:
    """Make a block profile's compute and memory non-increasing in the block index.

    Measured profiles wiggle with timer noise, but the planners rely on the monotonicity of
    docs/method.md, "Cost model" (a block nearer the input costs at least as much as one above it). Each
    block's cost is raised to the largest cost of the blocks above it (a suffix maximum), which
    never under-estimates a block. The notes say which blocks were raised, and by how much.
    """
    notes: list[str] = []
    blocks = list(blocks)
    for field_name in ("compute_s", "memory_bytes"):
        values = np.array([getattr(b, field_name) for b in blocks], dtype=float)
        smoothed = np.maximum.accumulate(values[::-1])[::-1]
        raised = np.flatnonzero(smoothed > values)
        if raised.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                worst = float(np.max((smoothed[raised] - values[raised]) / values[raised]))
            notes.append(f"profile {field_name} made monotone in depth: raised block(s) "
                         f"{raised.tolist()} by up to {worst:.1%}")
            blocks = [replace(b, **{field_name: float(v)}) for b, v in zip(blocks, smoothed)]
    return tuple(blocks), tuple(notes)


def usable_devices(instance: Instance) -> tuple[Instance, tuple[str, ...]]:
    """``instance`` without the devices that cannot finish every block in finite time, and a note
    naming them.

    A device is dropped when, even with the whole band, some block's compute or upload time is
    infinite in floating point: its SNR ``p g / N0`` underflows to 0, or ``compute_scale *
    compute_s`` or ``payload / rate`` overflows. Planners then never see it, so no plan uses it.

    Raises:
        InputError: a quantity that must be finite is not: the total payload, a device's SNR
            ``tx_power_w * channel_gain / noise_psd_w_per_hz``, or a rate at the whole band.
    """
    channel = instance.channel()
    total_payload = float(np.sum(instance.block_payload_bits()))
    if not np.isfinite(total_payload):
        raise InputError("blocks[*].payload_bits", "their sum", "overflows the float range",
                         "give payloads in a smaller unit range (their sum must stay below 1.8e308)")
    for k, device in enumerate(instance.devices):
        if device.spectral_efficiency is None and not np.isfinite(channel.snr_hz[k]):
            raise InputError(f"devices[{k}].tx_power_w * channel_gain / noise_psd_w_per_hz",
                             float(channel.snr_hz[k]), "overflows the float range",
                             "check the transmit power, channel gain and noise density")
    whole_band = channel.rate_bps(np.full(instance.num_devices, instance.bandwidth_hz))
    for k in np.flatnonzero(~np.isfinite(whole_band)):
        raise InputError(f"devices[{k}]", instance.devices[k].name,
                         f"has an infinite rate at bandwidth_hz = {instance.bandwidth_hz:.4g}",
                         "give a spectral efficiency and bandwidth whose product is finite")
    with np.errstate(divide="ignore", over="ignore"):
        latency = instance.compute_matrix_s() + instance.block_payload_bits()[None, :] / whole_band[:, None]
    finite = np.isfinite(latency).all(axis=1)
    if finite.all():
        return instance, ()
    dropped = [instance.devices[k].name for k in np.flatnonzero(~finite)]
    if not finite.any():
        raise InfeasibleError(
            f"devices: none can finish a block in finite time ({', '.join(dropped[:5])}"
            f"{', ...' if len(dropped) > 5 else ''}): their rate or compute is out of the float range; "
            f"check transmit powers, channel gains and compute scales")
    kept = tuple(device for device, ok in zip(instance.devices, finite) if ok)
    note = (f"{len(dropped)} device(s) cannot finish a block in finite time (rate or compute out of the "
            f"float range) and take no part: {', '.join(dropped)}")
    return replace(instance, devices=kept), (note,)


def check_matching_feasible(instance: Instance) -> None:
    """Raise :class:`InfeasibleError` unless a one-block-per-device matching exists.

    ``instance`` must have a monotone profile (see :func:`make_monotone`). With memory
    non-increasing in the block index, device k can hold exactly the blocks from
    ``first_k`` on, so the binding Hall sets are the prefixes {0..n}: a matching exists iff, for every n,
    at least ``n + 1`` devices can hold block n (docs/method.md, "CRUNCH": its checking step at an infinite threshold).
    """
    n_blocks, n_devices = instance.num_blocks, instance.num_devices
    if n_devices < n_blocks:
        raise InfeasibleError(
            f"devices: {n_devices} devices for {n_blocks} blocks; one-block-per-device schemes need "
            f"at least {n_blocks} devices; add devices or use a scheme that gives a device several blocks")
    memory = instance.block_memory_bytes()
    budgets = instance.memory_budgets()
    holders = (memory[None, :] <= budgets[:, None]).sum(axis=0)
    largest = int(np.argmax(budgets))
    for n in range(n_blocks):
        if holders[n] == 0:
            raise InfeasibleError(
                f"blocks[{n}].memory_bytes = {memory[n]:.4g}: no device can hold it; the largest "
                f"budget is {budgets[largest]:.4g} bytes (device {instance.devices[largest].name!r}); "
                f"raise a device's memory_bytes to at least {memory[n]:.4g}")
    for n in range(n_blocks):
        able = int((budgets >= memory[n]).sum())
        if able < n + 1:
            raise InfeasibleError(
                f"memory budgets: blocks 0..{n} each need at least {memory[n]:.4g} bytes but only "
                f"{able} device(s) have that much; give at least {n + 1} devices {memory[n]:.4g} bytes")




def check_every_block_fits(instance: Instance) -> None:
    """Raise :class:`InfeasibleError` unless every block fits some device's memory.

    That is the whole feasibility condition when devices may take several blocks: a set needs the
    memory of its dearest block, so giving each block to a device that holds it is feasible.
    """
    memory = instance.block_memory_bytes()
    budgets = instance.memory_budgets()
    largest = int(np.argmax(budgets))
    homeless = np.flatnonzero(memory > budgets[largest])
    if homeless.size:
        n = int(homeless[0])
        raise InfeasibleError(
            f"blocks[{n}].memory_bytes = {memory[n]:.4g}: no device can hold it; the largest budget is "
            f"{budgets[largest]:.4g} bytes (device {instance.devices[largest].name!r}); raise a device's "
            f"memory_bytes to at least {memory[n]:.4g}")

