"""Energy budgets in the planners (docs/method.md, "Energy budgets"): the exact solver against an
independent brute force, budgets never exceeded, and clear refusals."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from deft_ray.errors import InfeasibleError, InputError
from deft_ray.planners import Instance, solve

from .conftest import make_instance, small_random_instances
from .oracles import brute_force_budget_optimum, plan_energy_j

BUDGETED = ("crunch", "jbba", "exact")


def with_budgets(instance: Instance, rng: np.random.Generator, *, spread: tuple[float, float] = (0.3, 3.0)) -> Instance:
    """``instance`` with compute powers, a transmit power on every device, and budgets around the
    energy of a random block uploaded at a random multiple of the equal share, so that some pairs
    are cut, some bind and some are free."""
    share = instance.bandwidth_hz / instance.num_devices
    devices = []
    for k, device in enumerate(instance.devices):
        device = replace(device, tx_power_w=device.tx_power_w or 0.2, compute_power_w=float(rng.uniform(0.01, 0.2)))
        n = int(rng.integers(instance.num_blocks))
        block = instance.blocks[n]
        if device.spectral_efficiency is not None:
            rate = share * rng.uniform(*spread) * device.spectral_efficiency
        else:
            b = share * rng.uniform(*spread)
            rate = b * math.log2(1 + device.tx_power_w * device.channel_gain / (instance.noise_psd_w_per_hz * b))
        budget = device.compute_power_w * device.compute_scale * block.compute_s + 0.2 * block.payload_bits / rate
        devices.append(replace(device, energy_budget_j=float(budget) if rng.random() < 0.8 else None))
    return replace(instance, devices=tuple(devices))


def budget_instances(count: int, seed: int, max_devices: int = 5) -> list[Instance]:
    rng = np.random.default_rng(seed)
    return [with_budgets(instance, rng) for instance in small_random_instances(count, seed)
            if instance.num_devices <= max_devices]


def test_exact_equals_an_independent_brute_force_with_budgets():
    feasible = infeasible = 0
    for instance in budget_instances(90, seed=31):
        optimum = brute_force_budget_optimum(instance)
        if math.isinf(optimum):
            with pytest.raises(InfeasibleError, match="energy_budget_j"):
                solve(instance, "exact")
            infeasible += 1
            continue
        assert solve(instance, "exact").round_latency_s == pytest.approx(optimum, rel=1e-7)
        feasible += 1
    assert feasible >= 20 and infeasible >= 3


def test_budgets_change_the_optimum_somewhere():
    """The test family is not trivially loose: budgets raise the optimum on some instances."""
    raised = 0
    for instance in budget_instances(60, seed=8):
        free = replace(instance, devices=tuple(replace(d, energy_budget_j=None) for d in instance.devices))
        with_budget = brute_force_budget_optimum(instance)
        if math.isfinite(with_budget) and with_budget > solve(free, "exact").round_latency_s * (1 + 1e-6):
            raised += 1
    assert raised >= 3


@pytest.mark.parametrize("scheme", BUDGETED)
def test_plans_never_exceed_a_budget(scheme):
    planned = 0
    for instance in budget_instances(120, seed=5, max_devices=8):
        try:
            plan = solve(instance, scheme)
        except InfeasibleError:
            continue
        planned += 1
        energy = plan_energy_j(instance, plan)
        for device in instance.devices:
            if device.name in energy and device.energy_budget_j is not None:
                assert energy[device.name] <= device.energy_budget_j * (1 + 1e-9), (scheme, device.name)
        assert plan.device_energy_j == pytest.approx(energy, rel=1e-9)
    assert planned >= 30


def test_jbba_is_never_better_than_exact_and_optimal_when_it_says_so():
    for instance in budget_instances(120, seed=12, max_devices=8):
        try:
            exact = solve(instance, "exact").round_latency_s
        except InfeasibleError:
            continue
        jbba = solve(instance, "jbba")
        assert jbba.round_latency_s >= exact * (1 - 1e-9)
        if any("optimal: lower bound" in note for note in jbba.diagnostics):
            assert jbba.round_latency_s == pytest.approx(exact, rel=1e-7)


def test_a_budget_the_compute_alone_exceeds_is_refused_with_the_reason():
    instance = make_instance(num_blocks=2, num_devices=2)
    devices = tuple(replace(d, compute_power_w=10.0, tx_power_w=0.2, energy_budget_j=1.0) for d in instance.devices)
    with pytest.raises(InfeasibleError, match=r"energy_budget_j: no device that holds block 0 can train it"):
        solve(replace(instance, devices=devices), "exact")


def test_budgets_whose_floors_exceed_the_band_are_refused():
    instance = make_instance(num_blocks=2, num_devices=2, bandwidth_hz=1e5)
    # each upload may last at most 0.5 s: 1e6 bits need 1e6 Hz at 2 bit/s/Hz, and the band is 1e5
    devices = tuple(replace(d, compute_power_w=0.0, tx_power_w=0.2, energy_budget_j=0.1) for d in instance.devices)
    for scheme in BUDGETED:
        with pytest.raises(InfeasibleError, match="energy"):
            solve(replace(instance, devices=devices), scheme)


def test_a_scheme_that_ignores_budgets_is_refused():
    instance = make_instance()
    devices = tuple(replace(d, compute_power_w=1.0, tx_power_w=0.2, energy_budget_j=100.0) for d in instance.devices)
    with pytest.raises(InputError, match=r"scheme = 'greedy-bw': does not plan with energy budgets"):
        solve(replace(instance, devices=devices), "greedy-bw")


def test_a_loose_budget_changes_nothing():
    for instance in small_random_instances(20, seed=3):
        loose = replace(instance, devices=tuple(replace(d, compute_power_w=1.0, energy_budget_j=1e30)
                                                for d in instance.devices))
        for scheme in BUDGETED:
            assert solve(loose, scheme).round_latency_s == pytest.approx(solve(instance, scheme).round_latency_s,
                                                                        rel=1e-12)


def test_energy_fields_travel_through_the_instance_json():
    instance = make_instance()
    devices = tuple(replace(d, compute_power_w=5.0, tx_power_w=0.2, energy_budget_j=50.0) for d in instance.devices)
    budgeted = replace(instance, devices=devices)
    assert Instance.from_dict(budgeted.to_dict()) == budgeted
    raw = budgeted.to_dict()
    raw["devices"][1]["energy_budget_j"] = -1
    with pytest.raises(InputError, match=r"devices\[1\].energy_budget_j = -1: must be positive"):
        Instance.from_dict(raw)
