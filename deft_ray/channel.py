"""Uplink channel models of the emulated devices (PAPER.md section 2.4 and section 7 defaults).

The planners see a device's channel as ``tx_power_w`` and ``channel_gain`` (Shannon rate) or a
fixed ``spectral_efficiency``; this module turns a device's distance and fading into the gain.
"""

from __future__ import annotations

import numpy as np


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
