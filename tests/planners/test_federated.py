"""Tests of the federated LoRA baselines (fedavg, ffa-lora) and the replicated coverage rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from deft_ray.errors import InfeasibleError, InputError
from deft_ray.planners import Plan, evaluate, get_scheme, solve
from deft_ray.planners.federated import FedAvg, FfaLora
from deft_ray.planners.registry import planning_instance, score

from .conftest import make_device, make_instance

FEDERATED = ("fedavg", "ffa-lora")


def schemes_under_test() -> list:
    return [FedAvg(), FedAvg(local_steps=3), FfaLora(), FfaLora(local_steps=2)]


@pytest.mark.parametrize("scheme", schemes_under_test(), ids=lambda s: f"{s.name}-E{s.local_steps}")
def test_plans_are_feasible_replicated_and_equalised(random_instances, scheme):
    planned = 0
    for instance in random_instances[:80]:
        costed, _ = planning_instance(instance, scheme)
        fits = costed.memory_budgets() >= costed.block_memory_bytes().max()
        if not fits.any():
            with pytest.raises(InfeasibleError, match="largest budget"):
                solve(instance, scheme)
            continue
        plan = solve(instance, scheme)
        planned += 1
        # every device that holds the whole adapter takes part, with every block; the rest sit out
        assert set(plan.assignment) == {d.name for d, ok in zip(costed.devices, fits) if ok}
        assert all(blocks == tuple(range(costed.num_blocks)) for blocks in plan.assignment.values())
        assert sum(plan.bandwidth_hz.values()) == pytest.approx(costed.bandwidth_hz, rel=1e-9)
        latencies = np.array(list(plan.device_latency_s.values()))
        assert latencies.max() - latencies.min() <= 1e-7 * latencies.max()
    assert planned >= 40


def test_a_device_lacking_memory_sits_out_and_none_fitting_is_infeasible():
    base = make_instance(num_blocks=3, num_devices=4)  # block 0 needs 5e8 bytes
    devices = list(base.devices)
    devices[2] = replace(devices[2], memory_bytes=4.9e8)
    plan = solve(replace(base, devices=tuple(devices)), "fedavg")
    assert sorted(plan.assignment) == ["d0", "d1", "d3"]
    assert any("sit out" in note and "d2" in note for note in plan.diagnostics)

    starved = tuple(replace(d, memory_bytes=4e8) for d in base.devices)
    with pytest.raises(InfeasibleError, match=r"fedavg: training every block needs 5e\+08 bytes"):
        solve(replace(base, devices=starved), "fedavg")


def test_local_steps_multiply_the_compute_part():
    instance = make_instance(num_blocks=3, num_devices=4)  # spectral-efficiency rates
    one, three = FedAvg(local_steps=1), FedAvg(local_steps=3)
    plan = solve(instance, one)
    at_one, at_three = score(instance, plan, one), score(instance, plan, three)
    for name in plan.assignment:  # the same bandwidth: only the compute part changes, and triples
        assert at_three.compute_s[name] == pytest.approx(3 * at_one.compute_s[name], rel=1e-12)
        assert at_three.upload_s[name] == pytest.approx(at_one.upload_s[name], rel=1e-12)
        assert at_one.compute_s[name] == pytest.approx(instance.devices[int(name[1:])].compute_scale * 1.0)
    replanned = solve(instance, three)
    assert replanned.round_latency_s > plan.round_latency_s
    assert score(instance, replanned, three).round_latency_s == pytest.approx(replanned.round_latency_s)


def test_ffa_lora_uploads_half_of_fedavg_at_the_same_bandwidth():
    instance = make_instance(num_blocks=4, num_devices=3)
    plan = solve(instance, "fedavg")
    fedavg, ffa = score(instance, plan, "fedavg"), score(instance, plan, "ffa-lora")
    for name in plan.assignment:
        assert ffa.upload_s[name] == pytest.approx(fedavg.upload_s[name] / 2, rel=1e-12)
        assert ffa.compute_s[name] == fedavg.compute_s[name]
    assert solve(instance, "ffa-lora").round_latency_s < plan.round_latency_s


def test_shannon_devices_get_equalised_shares_of_the_whole_band():
    devices = (make_device("d0", spectral_efficiency=None, tx_power_w=0.2, channel_gain=1e-11),
               make_device("d1", compute_scale=2.0, spectral_efficiency=None, tx_power_w=0.1, channel_gain=3e-12),
               make_device("d2", compute_scale=0.5))
    instance = make_instance(num_blocks=3, devices=devices, bandwidth_hz=2e6)
    for name in FEDERATED:
        plan = solve(instance, name)
        assert sum(plan.bandwidth_hz.values()) == pytest.approx(2e6, rel=1e-9)
        assert max(plan.device_latency_s.values()) == pytest.approx(min(plan.device_latency_s.values()), rel=1e-7)


def test_replicated_coverage_rule():
    instance = make_instance(num_blocks=2, num_devices=2)
    twice = Plan(scheme="x", assignment={"d0": (0, 1), "d1": (0,)}, bandwidth_hz={"d0": 5e5, "d1": 5e5},
                 device_latency_s={}, round_latency_s=0.0, solve_time_s=0.0)
    assert "block 0 is assigned 2 times instead of once" in evaluate(instance, twice).violations
    assert evaluate(instance, twice, replicated=True).feasible
    missing = replace(twice, assignment={"d0": (0,), "d1": (0,)})
    assert evaluate(instance, missing, replicated=True).violations == ("block 1 is assigned to no device",)


@pytest.mark.parametrize("local_steps", [0, -2, 1.5, True, "3"])
def test_local_steps_must_be_a_positive_integer(local_steps):
    with pytest.raises(InputError, match="federated.local_steps"):
        get_scheme("fedavg", local_steps=local_steps)


def test_registry_builds_federated_schemes_with_options_and_the_others_without():
    assert get_scheme("fedavg", local_steps=3).local_steps == 3
    assert get_scheme("ffa-lora", local_steps=2).local_steps == 2
    assert get_scheme("fedavg").replicates_blocks and not get_scheme("fedavg").one_block_per_device
    assert not get_scheme("jbba").replicates_blocks
    instance = make_instance()
    assert get_scheme("jbba").cost_instance(instance) is instance
