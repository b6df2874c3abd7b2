import itertools

import numpy as np
import pytest

from deft_ray.planners import pair_latency_s, solve
from deft_ray.planners.crunch import crunch_matching, is_depth_monotone
from deft_ray.planners.matching import bottleneck_matching, milp_matching

from .populations import paper_population, synthetic_blocks


def brute_force_bottleneck(latency, feasible):
    """Smallest largest latency over every matching (K!/(K-N)! of them), inf if none."""
    num_devices, num_blocks = latency.shape
    best = np.inf
    for devices in itertools.permutations(range(num_devices), num_blocks):
        rows = list(devices)
        if feasible[rows, range(num_blocks)].all():
            best = min(best, latency[rows, range(num_blocks)].max())
    return best


def equal_share_problem(instance):
    share = np.full(instance.num_devices, instance.bandwidth_hz / instance.num_devices)
    return pair_latency_s(instance, share), instance.memory_feasible()


def test_crunch_equals_brute_force_on_every_small_instance(monotone_random_instances):
    checked = 0
    for instance in monotone_random_instances:
        latency, feasible = equal_share_problem(instance)
        expected = brute_force_bottleneck(latency, feasible)
        plan = solve(instance, "crunch")
        assert plan.round_latency_s == pytest.approx(expected, rel=1e-12)
        checked += 1
    assert checked >= 300


def test_counting_check_agrees_with_bipartite_matching_and_milp(monotone_random_instances):
    for instance in monotone_random_instances[:120]:
        latency, feasible = equal_share_problem(instance)
        if not is_depth_monotone(latency, feasible):
            continue
        blocks = np.arange(instance.num_blocks)
        by_counting = latency[crunch_matching(latency, feasible), blocks].max()
        by_matching = latency[bottleneck_matching(latency, feasible), blocks].max()
        by_milp, _ = milp_matching(latency, feasible)
        assert by_counting == pytest.approx(by_matching, rel=1e-12)
        assert by_counting == pytest.approx(by_milp, rel=1e-9)


def test_crunch_reports_infeasible_exactly_when_no_matching_exists():
    rng = np.random.default_rng(5)
    for _ in range(200):
        num_devices, num_blocks = rng.integers(1, 6), rng.integers(1, 5)
        latency = np.sort(rng.random((num_devices, num_blocks)), axis=1)[:, ::-1].copy()
        first_holdable = rng.integers(0, num_blocks + 1, size=num_devices)
        feasible = np.arange(num_blocks)[None, :] >= first_holdable[:, None]
        result = crunch_matching(latency, feasible)
        assert (result is None) == np.isinf(brute_force_bottleneck(latency, feasible))


def test_crunch_respects_memory_and_one_block_per_device(monotone_random_instances):
    for instance in monotone_random_instances[:100]:
        plan = solve(instance, "crunch")
        budgets = dict(zip(instance.device_names, instance.memory_budgets()))
        memory = instance.block_memory_bytes()
        for name, blocks in plan.assignment.items():
            assert len(blocks) == 1 and memory[blocks[0]] <= budgets[name]
        assert plan.bandwidth_hz == {name: instance.bandwidth_hz / instance.num_devices for name in plan.assignment}


def test_unequal_payloads_fall_back_to_matching_check():
    latency = np.array([[1.0, 3.0], [2.0, 0.5], [4.0, 4.0]])  # row 0 rises with depth
    feasible = np.ones_like(latency, dtype=bool)
    assert not is_depth_monotone(latency, feasible)
    assert is_depth_monotone(np.array([[3.0, 1.0], [2.0, 2.0], [5.0, 0.5]]), feasible)
    assert not is_depth_monotone(np.array([[3.0, 1.0]]), np.array([[True, False]]))  # memory not a suffix
    assert latency[bottleneck_matching(latency, feasible), [0, 1]].max() == brute_force_bottleneck(latency, feasible)


def latency_greedy(latency, feasible):
    """Deepest block first, each to the free device that finishes it soonest."""
    free = np.ones(latency.shape[0], dtype=bool)
    chosen = []
    for block in range(latency.shape[1]):
        candidates = np.where(free & feasible[:, block], latency[:, block], np.inf)
        device = int(np.argmin(candidates))
        chosen.append(latency[device, block])
        free[device] = False
    return max(chosen)


def test_latency_greedy_is_a_second_exact_oracle(monotone_random_instances):
    """With latency monotone in depth and nested memory sets, the latency greedy is exact (see
    Greedy's docstring), so it must reach CRUNCH's bottleneck on every instance, at any size."""
    rng = np.random.default_rng(9)
    large = [paper_population(synthetic_blocks(12, rng), k, rng) for k in (12, 40, 100)]
    for instance in [*monotone_random_instances, *large]:
        latency, feasible = equal_share_problem(instance)
        if not is_depth_monotone(latency, feasible):
            continue
        blocks = np.arange(instance.num_blocks)
        assert latency[crunch_matching(latency, feasible), blocks].max() == latency_greedy(latency, feasible)
