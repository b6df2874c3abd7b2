"""The rate models and the Shannon bandwidth inverse, against 60-digit references (mpmath)."""

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deft_ray.planners import Channel

from .oracles import mp_shannon_bandwidth_hz

LN2 = math.log(2)
#: Fractions of the capacity ``gamma / ln 2`` from far below it to within 1e-12 of it.
FRACTIONS = [1e-9, 1e-6, 1e-3, 0.1, 0.3, 0.49, 0.5, 0.51, 0.7, 0.9, 0.99, 0.999, 0.99992, 1 - 1e-5,
             1 - 1e-6, 1 - 1e-8, 1 - 1e-10, 1 - 1e-11, 1 - 1e-12]
SNRS_HZ = [1e-6, 3.7e-3, 1.0, 100.0, 6.4e4, 1e7, 2.9e9, 1e12]


def shannon(snr_hz) -> Channel:
    snr = np.atleast_1d(np.asarray(snr_hz, dtype=float))
    return Channel(spectral_efficiency=np.full(snr.shape, np.nan), snr_hz=snr)


def assert_inverse_exact(rate_bps: float, snr_hz: float) -> None:
    computed = shannon(snr_hz).bandwidth_for_rate_hz(np.array([rate_bps]))[0]
    reference = mp_shannon_bandwidth_hz(rate_bps, snr_hz)
    assert math.isfinite(computed), (rate_bps, snr_hz)
    assert abs(mpmath.mpf(computed) / reference - 1) <= 1e-12, (rate_bps, snr_hz, computed, reference)


@pytest.mark.parametrize("snr_hz", SNRS_HZ)
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_shannon_inverse_is_exact_over_the_whole_range(fraction, snr_hz):
    assert_inverse_exact(fraction * snr_hz / LN2, snr_hz)


@settings(max_examples=300, deadline=None)
@given(log_snr=st.floats(-6, 12), log_distance=st.floats(-12, -0.01), near=st.booleans(),
       log_fraction=st.floats(-9, 0))
def test_shannon_inverse_is_exact_on_random_points(log_snr, log_distance, near, log_fraction):
    snr = 10.0 ** log_snr
    fraction = 1 - 10.0 ** log_distance if near else 10.0 ** log_fraction
    rate = fraction * snr / LN2
    if rate * LN2 >= snr:  # rounding put it at capacity
        return
    assert_inverse_exact(rate, snr)


def test_the_inverse_is_vectorised_and_agrees_elementwise():
    snr = np.array(SNRS_HZ)[:, None] * np.ones(len(FRACTIONS))[None, :]
    rate = np.array(FRACTIONS)[None, :] * snr / LN2
    together = shannon(snr.ravel()).bandwidth_for_rate_hz(rate.ravel())
    alone = [shannon(g).bandwidth_for_rate_hz(np.array([r]))[0] for g, r in zip(snr.ravel(), rate.ravel())]
    np.testing.assert_array_equal(together, alone)


def test_ln2_constants_are_ln2_in_double_double():
    from deft_ray.planners.rates import LN2_HI, LN2_LO

    assert abs(mpmath.mpf(LN2_HI) + mpmath.mpf(LN2_LO) - mpmath.log(2)) < mpmath.mpf(10) ** -32
    assert LN2_HI == LN2


def test_infinite_need_at_and_above_capacity_zero_need_for_zero_rate():
    channel = shannon([1e6, 1e6, 1e6, 1e6])
    capacity = 1e6 / LN2
    need = channel.bandwidth_for_rate_hz(np.array([capacity, 1.0001 * capacity, np.inf, 0.0]))
    assert np.isinf(need[:3]).all() and need[3] == 0.0


def test_linear_rate_and_inverse():
    channel = Channel(spectral_efficiency=np.array([3.0, 0.25]), snr_hz=np.array([np.nan, np.nan]))
    np.testing.assert_array_equal(channel.rate_bps(np.array([2e6, 4e6])), [6e6, 1e6])
    np.testing.assert_array_equal(channel.bandwidth_for_rate_hz(np.array([6e6, 1e6])), [2e6, 4e6])
    assert np.isinf(channel.max_rate_bps()).all()


def test_mixed_channels_keep_their_own_model():
    channel = Channel(spectral_efficiency=np.array([np.nan, 2.0]), snr_hz=np.array([1e6, np.nan]))
    need = channel.bandwidth_for_rate_hz(np.array([0.5e6 / LN2, 4e6]))
    assert need[1] == 2e6
    assert abs(mpmath.mpf(need[0]) / mp_shannon_bandwidth_hz(0.5e6 / LN2, 1e6) - 1) < 1e-12


@pytest.mark.parametrize("snr_hz", [1e-6, 1.0, 6.4e4, 1e12])
def test_shannon_rate_is_exact_and_approaches_capacity(snr_hz):
    bandwidth = snr_hz * np.array([1e-9, 1e-3, 1.0, 1e3, 1e9, 1e15])
    rate = shannon(np.full(bandwidth.shape, snr_hz)).rate_bps(bandwidth)
    for b, r in zip(bandwidth, rate):
        exact = mpmath.mpf(b) * mpmath.log1p(mpmath.mpf(snr_hz) / mpmath.mpf(b)) / mpmath.log(2)
        assert abs(mpmath.mpf(r) / exact - 1) < 1e-14
    assert rate[-1] == pytest.approx(snr_hz / LN2, rel=1e-12)
    assert np.all(np.diff(rate) > 0) and shannon(snr_hz).rate_bps(np.array([0.0]))[0] == 0.0


@pytest.mark.parametrize("ratio", [1e-9, 1e-4, 0.009, 0.011, 1.0, 1e3])
def test_rate_slope_is_the_derivative(ratio):
    snr = 6.4e4
    b = snr / ratio
    slope = shannon(snr).rate_slope_bps_per_hz(np.array([b]))[0]
    exact = mpmath.diff(lambda x: x * mpmath.log1p(mpmath.mpf(snr) / x) / mpmath.log(2), mpmath.mpf(b))
    assert abs(mpmath.mpf(slope) / exact - 1) < 1e-9


def test_channel_of_an_instance_and_its_capacity():
    from deft_ray.planners import BlockCost, DeviceState, Instance

    devices = (DeviceState("linear", 1.0, 1e9, spectral_efficiency=3.5),
               DeviceState("shannon", 1.0, 1e9, tx_power_w=0.2, channel_gain=2e-12))
    instance = Instance(bandwidth_hz=1e7, blocks=(BlockCost(1.0, 1.0, 1e6),), devices=devices,
                        noise_psd_w_per_hz=4e-21)
    channel = instance.channel()
    np.testing.assert_array_equal(channel.is_linear, [True, False])
    assert channel.spectral_efficiency[0] == 3.5 and np.isnan(channel.spectral_efficiency[1])
    assert np.isnan(channel.snr_hz[0]) and channel.snr_hz[1] == pytest.approx(0.2 * 2e-12 / 4e-21, rel=1e-15)
    capacity = channel.max_rate_bps()
    assert np.isinf(capacity[0]) and capacity[1] == pytest.approx(1e8 / LN2, rel=1e-15)
    np.testing.assert_array_equal(channel.take(np.array([1, 0])).is_linear, [False, True])


def test_bracketed_newton_bisects_when_newton_would_leave_the_bracket():
    """Newton on atan diverges from far away; the bracket keeps it and bisection brings it home."""
    from deft_ray.planners.roots import bracketed_newton

    def residual(u, index):
        return np.arctan(u - 3.0), 1.0 / (1.0 + (u - 3.0) ** 2)

    root = bracketed_newton(residual, np.array([-15.0, 19.0]), np.array([-20.0, -20.0]), np.array([20.0, 20.0]),
                            increasing=True)
    np.testing.assert_allclose(root, [3.0, 3.0], rtol=0, atol=1e-12)


def test_bracketed_newton_converges_quadratically_on_a_smooth_function():
    from deft_ray.planners.roots import bracketed_newton

    calls = []

    def residual(u, index):  # decreasing, root at log 2
        calls.append(u.size)
        return 2.0 - np.exp(u), -np.exp(u)

    root = bracketed_newton(residual, np.array([0.0]), np.array([-5.0]), np.array([5.0]), increasing=False)
    assert root[0] == pytest.approx(math.log(2), rel=1e-15)
    assert len(calls) <= 8
