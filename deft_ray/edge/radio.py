"""The radio between the devices and the edge server: path loss, fading, and the planners' device state.

The planners see a device's channel as ``tx_power_w`` and ``channel_gain`` (Shannon rate) or a
fixed ``spectral_efficiency`` (docs/method.md, "Rate models"); this module turns a device's
distance and fading into the gain, and the gain into the planners' :class:`DeviceState`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from deft_ray.planners import DeviceState

THERMAL_NOISE_DBM_PER_HZ = -174.0
"""Thermal noise power spectral density at room temperature (-174 dBm/Hz)."""


def dbm_to_w(dbm: float) -> float:
    """Power in dBm to watts (23 dBm is 0.2 W)."""
    return 10.0 ** ((dbm - 30.0) / 10.0)


def path_loss_db(distance_m: np.ndarray | float) -> np.ndarray:
    """Large-scale path loss ``128.1 + 37.6 log10(d / 1 km)`` dB (3GPP macro cell)."""
    return 128.1 + 37.6 * np.log10(np.asarray(distance_m, dtype=float) / 1000.0)


def channel_gain(distance_m: np.ndarray | float, *, rayleigh: bool = False,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Channel power gain: path loss, times ``|h|^2 ~ Exp(1)`` Rayleigh fading when asked."""
    gain = 10.0 ** (-path_loss_db(distance_m) / 10.0)
    if rayleigh:
        if rng is None:
            raise ValueError("Rayleigh fading needs a random generator (rng)")
        gain = gain * rng.exponential(1.0, size=np.shape(gain))
    return gain


def device_state(name: str, *, compute_scale: float, memory_bytes: float, tx_power_w: float, gain: float,
                 rate_model: Literal["shannon", "spectral_efficiency"], noise_psd_w_per_hz: float,
                 bandwidth_hz: float, num_devices: int, compute_power_w: float | None = None,
                 energy_budget_j: float | None = None) -> DeviceState:
    """The planners' view of one device.

    ``shannon`` keeps the power and gain (the rate depends on the bandwidth share);
    ``spectral_efficiency`` fixes the device's bits per Hz at the SNR of an equal share
    ``bandwidth_hz / num_devices`` (the transmit power then only counts the upload energy).
    """
    if rate_model == "spectral_efficiency":
        snr = tx_power_w * gain / (noise_psd_w_per_hz * bandwidth_hz / num_devices)
        channel = {"spectral_efficiency": float(np.log2(1.0 + snr)), "tx_power_w": tx_power_w}
    else:
        channel = {"tx_power_w": tx_power_w, "channel_gain": float(gain)}
    return DeviceState(name=name, compute_scale=compute_scale, memory_bytes=memory_bytes, **channel,
                       compute_power_w=compute_power_w, energy_budget_j=energy_budget_j)
