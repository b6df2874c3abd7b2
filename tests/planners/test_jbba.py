import math

import numpy as np
import pytest

from deft_ray.planners import evaluate, solve
from deft_ray.planners.jbba import BandwidthStep, project_to_simplex
from deft_ray.edge.scenario import PopulationSpec, random_instance, synthetic_blocks


@pytest.fixture(scope="module")
def solved(random_instances):
    return [(instance, solve(instance, "jbba"), solve(instance, "crunch"), solve(instance, "optimal"))
            for instance in random_instances]


def test_jbba_never_worse_than_crunch_and_within_one_percent_of_optimal(solved):
    gaps = []
    for instance, jbba, crunch, optimal in solved:
        assert jbba.round_latency_s <= crunch.round_latency_s * (1 + 1e-9)
        assert optimal.round_latency_s <= jbba.round_latency_s * (1 + 1e-9)
        gaps.append(jbba.round_latency_s / optimal.round_latency_s - 1)
    assert len(gaps) >= 300
    assert max(gaps) <= 0.01
    assert np.mean(gaps) <= 0.001


def test_every_plan_is_feasible(solved):
    for instance, *plans in solved:
        for plan in plans:
            scored = evaluate(instance, plan, max_blocks_per_device=1)
            assert scored.feasible, scored.violations
            assert sum(plan.bandwidth_hz.values()) <= instance.bandwidth_hz * (1 + 1e-9)


def test_optimal_bandwidth_equalises_finishing_times(solved):
    for instance, jbba, _, optimal in solved[:80]:
        for plan in (jbba, optimal):
            latencies = np.array(list(plan.device_latency_s.values()))
            np.testing.assert_allclose(latencies, latencies.max(), rtol=1e-6)
            assert sum(plan.bandwidth_hz.values()) == pytest.approx(instance.bandwidth_hz, rel=1e-9)


@pytest.mark.parametrize("rate_model", ["spectral_efficiency", "shannon"])
def test_bandwidth_step_satisfies_first_order_condition(rate_model):
    rng = np.random.default_rng(3)
    instance = random_instance(synthetic_blocks(4, rng), PopulationSpec(num_devices=6, rate_model=rate_model), rng)
    channel = instance.channel()
    step = BandwidthStep(channel, instance.block_payload_bits(), instance.bandwidth_hz, unit_s=0.5)
    lam = project_to_simplex(rng.random(instance.num_devices))
    lam[lam == 0] = 1e-3
    mu = 0.7
    beta, value = step.solve(lam, mu)
    rows = np.arange(instance.num_devices)[:, None]
    epsilon = 1e-6 * beta

    def objective(b):
        return lam[:, None] * step.upload(b, step.payloads[None, :], rows) + mu * b

    # d/dbeta [lam * upload(beta) + mu * beta] = 0 at the optimum, and it is a minimum
    derivative = (objective(beta + epsilon) - objective(beta - epsilon)) / (2 * epsilon)
    np.testing.assert_allclose(derivative, 0.0, atol=1e-5 * mu)
    assert np.all(objective(beta * 1.1) > value) and np.all(objective(beta * 0.9) > value)
    if rate_model == "spectral_efficiency":  # closed form beta* = sqrt(lam a / mu)
        a = step.payloads[None, :] / (channel.spectral_efficiency[:, None] * instance.bandwidth_hz * 0.5)
        np.testing.assert_allclose(beta, np.sqrt(lam[:, None] * a / mu), rtol=1e-12)


def test_project_to_simplex():
    projected = project_to_simplex(np.array([0.5, 2.0, -1.0]))
    assert projected.sum() == pytest.approx(1.0) and projected.min() >= 0
    np.testing.assert_allclose(projected, [0.0, 1.0, 0.0])
    floored = project_to_simplex(np.array([0.5, 2.0, -1.0]), floor=0.01)
    assert floored.min() == pytest.approx(0.01) and floored.sum() == pytest.approx(1.0)


def test_jbba_gives_weak_devices_more_bandwidth():
    """PAPER.md 5.4: the closed form favours resource-limited devices; with equal compute, the
    device with the poorer channel gets the larger share in the optimum."""
    from deft_ray.planners import BlockCost, DeviceState, Instance

    blocks = (BlockCost(compute_s=0.1, memory_bytes=1, payload_bits=1e6),
              BlockCost(compute_s=0.1, memory_bytes=1, payload_bits=1e6))
    devices = (DeviceState(name="good", compute_scale=1, memory_bytes=1e9, spectral_efficiency=8.0),
               DeviceState(name="poor", compute_scale=1, memory_bytes=1e9, spectral_efficiency=2.0))
    plan = solve(Instance(bandwidth_hz=1e6, blocks=blocks, devices=devices), "jbba")
    assert plan.bandwidth_hz["poor"] == pytest.approx(4 * plan.bandwidth_hz["good"], rel=1e-6)
    assert math.isclose(plan.device_latency_s["poor"], plan.device_latency_s["good"], rel_tol=1e-9)
