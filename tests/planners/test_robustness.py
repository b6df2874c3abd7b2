"""Planners on any finite instance: a plan or a DeftRayError that says why, never another exception,
and never a device that cannot upload in finite time."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deft_ray.errors import InfeasibleError, InputError, TooLargeError
from deft_ray.planners import (
    BlockCost,
    DeviceState,
    Instance,
    get_scheme,
    scheme_names,
    solve,
)

from .populations import (
    NOISE_PSD_W_PER_HZ,
    TX_POWER_W,
    paper_population,
    roberta_blocks,
)

ALL_SCHEMES = scheme_names(aliases=False)
ALLOWED_ERRORS = (InfeasibleError, InputError, TooLargeError)


@st.composite
def extreme_instances(draw) -> Instance:
    """K <= 6 devices, N <= 4 blocks; SNR 1e-6..1e12 Hz (Shannon) or spectral efficiency
    1e-6..30 bit/s/Hz, bandwidth 1e3..1e10 Hz, payloads 1e2..1e10 bits, compute and memory spread
    over many orders of magnitude."""
    def log(low: float, high: float) -> float:
        return 10.0 ** draw(st.floats(low, high))

    num_blocks = draw(st.integers(1, 4))
    num_devices = draw(st.integers(1, 6))
    blocks = tuple(BlockCost(compute_s=log(-4, 3), memory_bytes=log(3, 10), payload_bits=log(2, 10))
                   for _ in range(num_blocks))
    devices = []
    for k in range(num_devices):
        if draw(st.booleans()):
            channel = dict(tx_power_w=1.0, channel_gain=log(-6, 12) * NOISE_PSD_W_PER_HZ)
        else:
            channel = dict(spectral_efficiency=log(-6, 1.5))
        devices.append(DeviceState(name=f"d{k}", compute_scale=log(-2, 2), memory_bytes=log(3, 10.5), **channel))
    return Instance(bandwidth_hz=log(3, 10), blocks=blocks, devices=tuple(devices),
                    noise_psd_w_per_hz=NOISE_PSD_W_PER_HZ)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=extreme_instances())
def test_every_scheme_plans_or_says_why(instance):
    plans = {}
    for name in ALL_SCHEMES:
        try:
            plan = solve(instance, name)
        except ALLOWED_ERRORS:
            continue
        assert math.isfinite(plan.round_latency_s) and plan.round_latency_s > 0, name
        assert sum(plan.bandwidth_hz.values()) <= instance.bandwidth_hz * (1 + 1e-7), name
        plans[name] = plan.round_latency_s
    if "exact" in plans:  # the optimum holds at every scale, and JBBA's guarantee over CRUNCH too
        one_block = [name for name in plans if get_scheme(name).one_block_per_device]
        assert plans["exact"] <= min(plans[name] for name in one_block) * (1 + 1e-9)
        assert plans["jbba"] <= plans["crunch"] * (1 + 1e-12)


@pytest.mark.parametrize("scheme", ["crunch", "jbba", "exact", "multiblock", "fedavg", "greedy-bw"])
@pytest.mark.parametrize("case", ["far-group", "whisper"])
def test_a_far_or_quiet_device_group_never_crashes_the_planners(scheme, case):
    """A device group 1000 km away, or at -100 dBm, next to a normal population."""
    rng = np.random.default_rng(8)
    base = paper_population(roberta_blocks(12), 30, rng, bandwidth_hz=1e7)
    devices = list(base.devices)
    for k in range(0, 30, 3):
        if case == "far-group":
            gain = 10 ** (-(128.1 + 37.6 * math.log10(1e6 / 1000)) / 10)
            devices[k] = replace(devices[k], channel_gain=gain)
        else:
            devices[k] = replace(devices[k], tx_power_w=1e-13)
    plan = solve(replace(base, devices=tuple(devices)), scheme)
    assert math.isfinite(plan.round_latency_s)
    weak = {devices[k].name for k in range(0, 30, 3)}
    if scheme in ("crunch", "jbba", "exact", "multiblock"):  # 20 strong devices for 12 blocks: none needs a weak one
        assert not weak & set(plan.assignment)


def test_a_device_that_cannot_upload_is_never_chosen():
    """SNR 1e-200 * 1e-200 / N0 underflows to 0: the device is left out, with a note."""
    rng = np.random.default_rng(2)
    base = paper_population(roberta_blocks(12), 14, rng)
    silent = replace(base.devices[0], tx_power_w=1e-200, channel_gain=1e-200, compute_scale=1e-3,
                     memory_bytes=1e12)
    instance = replace(base, devices=(silent, *base.devices[1:]))
    for name in ("crunch", "jbba", "exact", "multiblock", "fedavg", "single-device"):
        plan = solve(instance, name)
        assert silent.name not in plan.assignment, name
        assert any("cannot finish a block in finite time" in note and silent.name in note for note in plan.diagnostics)


def test_too_few_usable_devices_is_infeasible():
    rng = np.random.default_rng(2)
    base = paper_population(roberta_blocks(12), 12, rng)
    silent = replace(base.devices[0], tx_power_w=1e-200, channel_gain=1e-200)
    with pytest.raises(InfeasibleError, match="11 devices for 12 blocks"):
        solve(replace(base, devices=(silent, *base.devices[1:])), "jbba")


def test_an_snr_that_overflows_is_an_input_error():
    rng = np.random.default_rng(2)
    base = paper_population(roberta_blocks(12), 12, rng)
    loud = replace(base.devices[3], tx_power_w=1e300, channel_gain=1e10)
    with pytest.raises(InputError, match=r"devices\[3\].tx_power_w \* channel_gain / noise_psd_w_per_hz"):
        solve(replace(base, devices=(*base.devices[:3], loud, *base.devices[4:])), "exact")


def test_weak_shannon_devices_do_not_break_the_bandwidth_step():
    """SNR of 100 Hz and less at 10 MHz (the old jbba/multiblock RuntimeError)."""
    rng = np.random.default_rng(6)
    base = paper_population(roberta_blocks(12), 16, rng)
    devices = list(base.devices)
    for k, snr in enumerate([100.0, 1.0, 1e-6]):
        devices[k] = replace(devices[k], tx_power_w=TX_POWER_W, channel_gain=snr * NOISE_PSD_W_PER_HZ / TX_POWER_W)
    instance = replace(base, devices=tuple(devices))
    for name in ("jbba", "multiblock", "exact"):
        assert math.isfinite(solve(instance, name).round_latency_s)
