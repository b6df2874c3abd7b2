import itertools
from dataclasses import replace

import numpy as np
import pytest

from deft_ray.errors import InfeasibleError, TooLargeError
from deft_ray.planners import (
    BlockCost,
    Instance,
    Plan,
    get_scheme,
    solve,
)

from .conftest import make_device, make_instance
from .populations import paper_population, synthetic_blocks

#: Random instances compared with the exhaustive optimum (K <= 4, N <= 6).
NUM_SMALL_INSTANCES = 150


def small_set_instances(count: int, seed: int) -> list[Instance]:
    """``count`` random instances with K in 1..4 and N in 1..6 (K < N included), alternating the
    two rate models, some with unequal payloads or noisy (non-monotone) compute; draws where a
    block fits no device are skipped."""
    rng = np.random.default_rng(seed)
    instances = []
    while len(instances) < count:
        i = len(instances)
        spec = dict(num_devices=int(rng.integers(1, 5)),
                    rate_model=("shannon", "spectral_efficiency")[i % 2],
                    bandwidth_hz=float(rng.uniform(5e5, 2e7)),
                    distance_m=(50.0, float(rng.uniform(100, 1000))))
        blocks = synthetic_blocks(int(rng.integers(1, 7)), rng, equal_payload=i % 3 != 0)
        if i % 7 == 3:
            blocks = tuple(replace(b, compute_s=b.compute_s * rng.uniform(0.9, 1.1)) for b in blocks)
        instance = paper_population(blocks, spec.pop("num_devices"), rng, **spec)
        if instance.memory_budgets().max() >= instance.block_memory_bytes().max():
            instances.append(instance)
    return instances


@pytest.fixture(scope="module")
def small_solved() -> list[tuple[Instance, Plan, Plan]]:
    return [(instance, solve(instance, "multiblock"), solve(instance, "optimal-sets"))
            for instance in small_set_instances(NUM_SMALL_INSTANCES, seed=7)]


def test_multiblock_is_within_two_percent_of_the_exhaustive_optimum(small_solved):
    gaps = []
    for instance, multiblock, optimal in small_solved:
        assert optimal.round_latency_s <= multiblock.round_latency_s * (1 + 1e-9)
        gaps.append(multiblock.round_latency_s / optimal.round_latency_s - 1)
    sizes = {(instance.num_devices, instance.num_blocks) for instance, *_ in small_solved}
    assert any(k < n for k, n in sizes) and any(k >= n for k, n in sizes)
    print(f"multiblock vs optimal-sets on {len(gaps)} instances: mean gap {np.mean(gaps):.2e}, max {max(gaps):.2e}")
    assert max(gaps) <= 0.02
    assert np.mean(gaps) <= 0.002


def test_multiblock_never_worse_than_jbba(random_instances):
    for instance in random_instances[:120]:
        multiblock = solve(instance, "multiblock")
        assert multiblock.round_latency_s <= solve(instance, "jbba").round_latency_s * (1 + 1e-9)


def test_optimal_sets_never_worse_than_the_one_block_optimum(random_instances):
    """Sets only widen the choice: every matching is an assignment of sets."""
    checked = 0
    for instance in random_instances:
        if instance.num_devices ** instance.num_blocks > 20_000:
            continue
        sets, matching = solve(instance, "optimal-sets"), solve(instance, "exact")
        assert sets.round_latency_s <= matching.round_latency_s * (1 + 1e-9)
        checked += 1
    assert checked >= 100


def test_optimal_sets_matches_a_scalar_brute_force():
    """Linear rates: for fixed sets the optimum T solves sum_k P_k / (s_k (T - c_k)) = B, found here
    by plain bisection over every assignment, independently of the vectorised machinery."""
    rng = np.random.default_rng(3)
    instance = paper_population(synthetic_blocks(4, rng, equal_payload=False), 3, rng,
                                rate_model="spectral_efficiency", memory_fraction=(0.5, 1.5))
    compute, memory = instance.block_compute_s(), instance.block_memory_bytes()
    payload, efficiency = instance.block_payload_bits(), instance.channel().spectral_efficiency
    best = np.inf
    for assignment in itertools.product(range(instance.num_devices), repeat=instance.num_blocks):
        sets = [[n for n, k in enumerate(assignment) if k == device] for device in range(instance.num_devices)]
        used = [k for k, blocks in enumerate(sets) if blocks]
        if any(memory[sets[k]].max() > instance.memory_budgets()[k] for k in used):
            continue
        set_compute = {k: instance.compute_scales()[k] * compute[sets[k]].max() for k in used}
        low, high = max(set_compute.values()), 1e3
        for _ in range(200):
            middle = 0.5 * (low + high)
            need = sum(payload[sets[k]].sum() / (efficiency[k] * (middle - set_compute[k])) for k in used)
            low, high = (middle, high) if need > instance.bandwidth_hz else (low, middle)
        best = min(best, high)
    assert solve(instance, "optimal-sets").round_latency_s == pytest.approx(best, rel=1e-9)


def test_fewer_devices_than_blocks():
    instance = make_instance(num_blocks=6, num_devices=2)
    plan = solve(instance, "multiblock")
    assert max(len(blocks) for blocks in plan.assignment.values()) >= 3
    assert plan.round_latency_s <= solve(instance, "single-device").round_latency_s * (1 + 1e-12)
    assert plan.round_latency_s == pytest.approx(solve(instance, "optimal-sets").round_latency_s, rel=1e-9)
    if len(plan.assignment) > 1:  # the optimal bandwidth makes the involved devices finish together
        latencies = list(plan.device_latency_s.values())
        np.testing.assert_allclose(latencies, max(latencies), rtol=1e-6)
        assert sum(plan.bandwidth_hz.values()) == pytest.approx(instance.bandwidth_hz, rel=1e-9)


@pytest.mark.parametrize("rate_model", ["shannon", "spectral_efficiency"])
def test_a_strong_device_takes_several_blocks_even_when_k_exceeds_n(rate_model):
    """One fast device and five very slow ones: the matching must involve slow devices, sets need not."""
    rng = np.random.default_rng(1)
    instance = paper_population(synthetic_blocks(4, rng), 6, rng, rate_model=rate_model, memory_fraction=(1.0, 1.2))
    devices = tuple(replace(device, compute_scale=0.2 if k == 0 else 20.0) for k, device in enumerate(instance.devices))
    instance = replace(instance, devices=devices)
    plan = solve(instance, "multiblock")
    assert plan.assignment == {"d0": tuple(range(instance.num_blocks))}
    assert plan.round_latency_s < solve(instance, "jbba").round_latency_s


def test_a_block_no_device_can_hold_is_reported():
    instance = make_instance(num_blocks=3, num_devices=2)
    instance = Instance(bandwidth_hz=1e6, blocks=instance.blocks,
                        devices=(make_device("a", memory_bytes=4.5e8), make_device("b", memory_bytes=3.5e8)))
    for scheme in ("multiblock", "optimal-sets"):
        with pytest.raises(InfeasibleError, match=r"blocks\[0\]\.memory_bytes = 5e\+08: no device can hold it; "
                                                  r"the largest budget is 4\.5e\+08 bytes \(device 'a'\)"):
            solve(instance, scheme)


def test_memory_budgets_shape_the_sets():
    """Only device 'big' holds block 0; the fast device 'small' can hold blocks 2.. only."""
    instance = make_instance(num_blocks=4, num_devices=2)
    instance = Instance(bandwidth_hz=1e6, blocks=instance.blocks,
                        devices=(make_device("big", compute_scale=5.0, memory_bytes=5e8),
                                 make_device("small", compute_scale=1.0, memory_bytes=3e8)))
    plan = solve(instance, "multiblock")
    assert 0 in plan.assignment["big"] and 1 in plan.assignment["big"]
    assert plan.round_latency_s == pytest.approx(solve(instance, "optimal-sets").round_latency_s, rel=1e-9)


def test_multiblock_is_deterministic_for_a_seed():
    rng = np.random.default_rng(11)
    instance = paper_population(synthetic_blocks(8, rng), 5, rng)
    instance = replace(instance, devices=tuple(replace(device, memory_bytes=1e10) for device in instance.devices))
    plans = [solve(instance, "multiblock", seed=seed) for seed in (4, 4, 5)]
    assert plans[0].assignment == plans[1].assignment
    assert plans[0].bandwidth_hz == plans[1].bandwidth_hz
    assert plans[0].diagnostics == plans[1].diagnostics


def test_optimal_sets_refuses_instances_too_large_to_enumerate():
    instance = make_instance(num_blocks=6, num_devices=8)  # 8^6 = 262144 assignments
    with pytest.raises(TooLargeError, match=r"K=8, N=6 has 2\.62e\+05 assignments \(K\^N\).*use scheme 'multiblock'"):
        solve(instance, "optimal-sets")
    assert get_scheme("optimal-sets").one_block_per_device is False
    assert get_scheme("multiblock").one_block_per_device is False


def test_blocks_with_unequal_payloads_and_a_single_device():
    blocks = tuple(BlockCost(compute_s=1.0 - 0.1 * n, memory_bytes=1e8, payload_bits=1e6 * (n + 1)) for n in range(3))
    instance = Instance(bandwidth_hz=1e6, blocks=blocks, devices=(make_device("only", spectral_efficiency=2.0),))
    plan = solve(instance, "multiblock")
    assert plan.assignment == {"only": (0, 1, 2)}
    assert plan.round_latency_s == pytest.approx(1.0 + 6e6 / 2e6)
