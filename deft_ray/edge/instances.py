"""Each round's planning Instance: the block profile and every live device's compute, memory and channel."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from deft_ray.edge.devices import DeviceSpec
from deft_ray.edge.payload import upload_payload_bits
from deft_ray.edge.radio import channel_gain, dbm_to_w, device_state
from deft_ray.planners import BlockCost, Instance

if TYPE_CHECKING:
    from deft_ray.config import RunConfig


def round_instance(config: RunConfig, specs: Sequence[DeviceSpec], profile: Sequence[BlockCost],
                   rng: np.random.Generator | None, gains: Mapping[str, float] | None = None,
                   tensors_per_block: Sequence[int] | None = None) -> Instance:
    """A round's Instance: the profile, with its float32 payloads sent as ``network.upload_dtype``
    (``tensors_per_block`` counts int8's per-tensor scales; without it they are left out), and each
    device's compute scale, memory, power, energy budget and channel: ``gains`` by device name
    (:meth:`~deft_ray.edge.dynamics.EdgeDynamics.gains`), else path loss at its spec's distance,
    times Rayleigh fading drawn from ``rng`` when the config asks for it."""
    network = config.network
    if network.upload_dtype != "float32":
        counts = tensors_per_block or [0] * len(profile)
        profile = [replace(block, payload_bits=upload_payload_bits(block.payload_bits, network.upload_dtype, count))
                   for block, count in zip(profile, counts)]
    noise = dbm_to_w(network.noise_dbm_per_hz)
    devices = tuple(
        device_state(spec.name, compute_scale=spec.compute_scale, memory_bytes=spec.memory_budget_bytes,
                     tx_power_w=spec.tx_power_w,
                     gain=float(gains[spec.name] if gains is not None else
                                channel_gain(spec.distance_m, rayleigh=network.rayleigh_fading, rng=rng)),
                     rate_model=network.rate_model, noise_psd_w_per_hz=noise, bandwidth_hz=network.bandwidth_hz,
                     num_devices=len(specs), compute_power_w=spec.compute_power_w,
                     energy_budget_j=spec.energy_budget_j)
        for spec in specs)
    return Instance(bandwidth_hz=network.bandwidth_hz, blocks=tuple(profile), devices=devices,
                    noise_psd_w_per_hz=noise)
