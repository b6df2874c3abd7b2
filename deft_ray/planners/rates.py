"""The uplink rate models and their exact inverse (docs/method.md, "Rate models").

Device k's rate at bandwidth ``b`` is ``R_k(b) = b s_k`` for a fixed spectral efficiency ``s_k``
(bit/s/Hz), or Shannon with noise proportional to the bandwidth,
``R_k(b) = b log2(1 + gamma_k / b)`` with ``gamma_k = p_k g_k / N0`` in Hz. The Shannon rate rises
with ``b`` towards the capacity ``gamma_k / ln 2`` and never reaches it, so a rate at or above it
needs an infinite bandwidth.

:meth:`Channel.bandwidth_for_rate_hz` inverts the rate to a relative 1e-12 over the whole range
(rates from 1e-9 of the capacity to within 1e-12 of it, any ``gamma``): with ``x = gamma / b`` and
``a = r ln 2 / gamma``, the root of ``ln(1 + x) / x = a`` is found by a bracketed Newton search in
``log x``. Far from capacity (``a <= 1/2``) it solves ``log ln(1 + x) - log x = log a``; near it
it solves ``log phi(x) = log(1 - a)`` with ``phi(x) = 1 - ln(1 + x) / x``, where ``1 - a`` comes
from an error-free product ``r * ln 2`` (Veltkamp splitting, ``ln 2`` in double-double) and
``phi`` from a series without cancellation, so rates within 1e-12 of capacity keep their digits.

Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deft_ray.planners.roots import bracketed_newton

if TYPE_CHECKING:
    from deft_ray.planners.instance import Instance

#: ln 2 as a double-double: ``LN2_HI`` is the double nearest ln 2, ``LN2_LO`` the rest.
LN2_HI = 0.6931471805599453
LN2_LO = 2.3190468138462996e-17
#: Veltkamp's splitting constant for doubles, ``2**27 + 1``.
_SPLITTER = 134217729.0
#: Where the inverse switches from the far-from-capacity to the near-capacity formulation, in
#: ``a = r ln 2 / gamma``; the two brackets below meet there.
_BRANCH_A = 0.5
#: ``x = gamma / b`` above which ``ln(1 + x) / x < 1/2`` and below which ``phi(x) > 1/2``.
_BRANCH_X = 2.52
#: Odd powers of ``t = x / (2 + x)`` in ``ln(1 + x) = 2 atanh(t)``; ``t <= 0.56`` on the near
#: branch, so 40 terms leave less than 1e-20.
_SERIES_TERMS = 40


@dataclass(frozen=True, slots=True)
class Channel:
    """Vectorised uplink rate model of a set of devices.

    Device k uses the linear model ``R = b * s_k`` where ``s_k`` is finite, and Shannon
    ``R = b log2(1 + gamma_k / b)`` otherwise.
    """

    spectral_efficiency: np.ndarray
    """``s_k`` in bit/s/Hz, NaN for Shannon devices."""
    snr_hz: np.ndarray
    """``gamma_k = p_k g_k / N0`` in Hz, NaN for linear devices."""

    @classmethod
    def of(cls, instance: Instance) -> Channel:
        linear = np.array([d.spectral_efficiency if d.spectral_efficiency is not None else np.nan
                           for d in instance.devices], dtype=float)
        with np.errstate(over="ignore", under="ignore"):
            gamma = np.array([np.nan if d.spectral_efficiency is not None
                              else d.tx_power_w * d.channel_gain / instance.noise_psd_w_per_hz
                              for d in instance.devices], dtype=float)
        return cls(spectral_efficiency=linear, snr_hz=gamma)

    @property
    def is_linear(self) -> np.ndarray:
        return ~np.isnan(self.spectral_efficiency)

    def max_rate_bps(self) -> np.ndarray:
        """Rate as bandwidth grows without bound: infinite (linear) or ``gamma / ln 2`` (Shannon)."""
        return np.where(self.is_linear, np.inf, self.snr_hz / math.log(2))

    def take(self, device_index: np.ndarray) -> Channel:
        """The channel of the devices ``device_index`` (any integer array shape); the rate methods
        then work elementwise on arrays of that shape."""
        return Channel(spectral_efficiency=self.spectral_efficiency[device_index],
                       snr_hz=self.snr_hz[device_index])

    def rate_bps(self, bandwidth_hz: np.ndarray) -> np.ndarray:
        """Uplink rate at the given bandwidth, elementwise (broadcast against the device arrays)."""
        b = np.asarray(bandwidth_hz, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            shannon = b * (np.log1p(self.snr_hz / b) / math.log(2))
            rate = np.where(np.isnan(self.spectral_efficiency), shannon, b * self.spectral_efficiency)
        return np.where(b > 0, rate, 0.0)

    def rate_slope_bps_per_hz(self, bandwidth_hz: np.ndarray) -> np.ndarray:
        """``dR/db`` at the given bandwidth, elementwise: ``s`` (linear) or
        ``(ln(1 + x) - x / (1 + x)) / ln 2`` with ``x = gamma / b`` (Shannon), by its series where
        ``x`` is small so that it keeps its digits near capacity."""
        b = np.asarray(bandwidth_hz, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = self.snr_hz / b
            series = x * x * (0.5 - x * (2.0 / 3.0 - x * (0.75 - x * (0.8 - x * (5.0 / 6.0)))))
            direct = np.log1p(x) - x / (1.0 + x)
            shannon = np.where(x < 1e-2, series, direct) / math.log(2)
            return np.where(np.isnan(self.spectral_efficiency), shannon, self.spectral_efficiency + 0.0 * b)

    def bandwidth_for_rate_hz(self, rate_bps: np.ndarray) -> np.ndarray:
        """The bandwidth needed to reach ``rate_bps``, elementwise (inverse of :meth:`rate_bps`).

        Linear: ``r / s``. Shannon: ``gamma / x`` with ``x`` the root of ``ln(1 + x) / x = a``,
        ``a = r ln 2 / gamma`` (see the module docstring); ``0`` for a zero rate and ``inf`` where
        the rate is at or above the capacity ``gamma / ln 2``. Exact to a relative 1e-12.
        """
        r = np.asarray(rate_bps, dtype=float)
        s, gamma = self.spectral_efficiency, self.snr_hz
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            linear = r / s
            if not np.isnan(s).any():
                return linear
            r, gamma = np.broadcast_arrays(r, gamma)
            shannon = shannon_bandwidth_hz(r, gamma)
        return np.where(np.isnan(s), shannon, linear)


def shannon_bandwidth_hz(rate_bps: np.ndarray, snr_hz: np.ndarray) -> np.ndarray:
    """The ``b`` with ``b log2(1 + snr_hz / b) = rate_bps``, elementwise (arrays of one shape).

    ``0`` where the rate is 0, ``inf`` where it is at or above the capacity ``snr_hz / ln 2`` (or
    not finite, or the SNR is not positive), NaN where the SNR is NaN.
    """
    r = np.asarray(rate_bps, dtype=float)
    gamma = np.asarray(snr_hz, dtype=float)
    result = np.full(r.shape, np.inf)
    result[np.isnan(gamma) | np.isnan(r)] = np.nan
    result[(r <= 0) & ~np.isnan(gamma)] = 0.0
    usable = (r > 0) & np.isfinite(r) & (gamma > 0) & np.isfinite(gamma)
    if not usable.any():
        return result
    r_u, g_u = r[usable], gamma[usable]
    a = r_u * LN2_HI / g_u + r_u * LN2_LO / g_u
    far = a <= _BRANCH_A
    x = np.empty(r_u.shape)
    if far.any():
        x[far] = _root_far(a[far])
    near = ~far
    if near.any():
        deficit = _capacity_deficit(r_u[near], g_u[near])
        x_near = np.full(deficit.shape, np.nan)
        below = deficit > 0
        x_near[below] = _root_near(deficit[below])
        x[near] = x_near
    bandwidth = g_u / x
    result[usable] = np.where(np.isnan(bandwidth), np.inf, bandwidth)
    return result


def _capacity_deficit(rate_bps: np.ndarray, snr_hz: np.ndarray) -> np.ndarray:
    """``1 - rate ln 2 / snr`` without cancellation, for ``rate ln 2 / snr > 1/2``.

    ``rate * LN2_HI`` is split into its rounded value and exact error (Dekker's product with
    Veltkamp splitting), ``snr - product`` is exact there (Sterbenz), and the small terms follow.
    """
    product = rate_bps * LN2_HI
    high, low = _split(rate_bps)
    ln2_high, ln2_low = _split(np.float64(LN2_HI))
    error = ((high * ln2_high - product) + high * ln2_low + low * ln2_high) + low * ln2_low
    return (((snr_hz - product) - error) - rate_bps * LN2_LO) / snr_hz


def _split(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp splitting: ``value = high + low`` exactly, each with at most 26 significant bits."""
    scaled = _SPLITTER * value
    high = scaled - (scaled - value)
    return high, value - high


def _phi(x: np.ndarray) -> np.ndarray:
    """``1 - ln(1 + x) / x`` for ``0 < x <= 2.52``, from ``ln(1 + x) = 2 atanh(t)``,
    ``t = x / (2 + x)``: ``phi = x / (2 + x) - (2 / x) sum_{j >= 1} t^(2j+1) / (2j+1)``, which has
    no cancellation as ``x -> 0``."""
    t = x / (2.0 + x)
    t2 = t * t
    series = np.zeros_like(x)
    for j in range(_SERIES_TERMS, 0, -1):  # Horner in t^2 of sum_j t^(2j) / (2j + 1)
        series = series * t2 + 1.0 / (2 * j + 1)
    series = series * t2  # the j = 0 term is not part of the sum
    return t - 2.0 * t * series / x


def _root_far(a: np.ndarray) -> np.ndarray:
    """``x >= 2.52`` with ``ln(1 + x) / x = a`` for ``0 < a <= 1/2``: the root of
    ``F(u) = log(ln(1 + e^u)) - u - log a`` (decreasing) in ``u = log x``.

    Bracket: ``F > 0`` at ``x = 2.5``; ``F < 0`` at ``x = (2/a)(1 + ln(1/a)) + 3``.
    """
    log_a = np.log(a)
    low = np.full(a.shape, math.log(2.5))
    high = np.log((2.0 / a) * (1.0 - log_a) + 3.0)
    start = np.log(np.maximum((1.0 / a) * (-log_a + np.log(np.maximum(-log_a, 1e-300)) + 1.0), 2.6))

    def residual(u, index):
        x = np.exp(u)
        log1p = np.log1p(x)
        return np.log(log1p) - u - log_a[index], x / ((1.0 + x) * log1p) - 1.0

    return np.exp(bracketed_newton(residual, start, low, high, increasing=False))


def _root_near(deficit: np.ndarray) -> np.ndarray:
    """``0 < x <= 2.52`` with ``phi(x) = deficit`` (``= 1 - a``) for ``0 < deficit < 1/2``: the
    root of ``G(u) = log phi(e^u) - log deficit`` (increasing) in ``u = log x``.

    Bracket: ``phi(x) <= x / 2`` gives ``G <= 0`` at ``x = 2 deficit``; ``G > 0`` at ``x = 2.52``.
    """
    log_deficit = np.log(deficit)
    low = np.log(2.0 * deficit)
    high = np.full(deficit.shape, math.log(_BRANCH_X))
    # phi(x) = x/2 - x^2/3 + ...: one inversion step of the series as the start
    start = np.clip(np.log(2.0 * deficit * (1.0 + 4.0 * deficit / 3.0)), low, high)

    def residual(u, index):
        x = np.exp(u)
        phi = _phi(x)
        return np.log(phi) - log_deficit[index], (x / (1.0 + x) - phi) / phi

    return np.exp(bracketed_newton(residual, start, low, high, increasing=True))
