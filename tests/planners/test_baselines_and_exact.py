import pytest

from deft_ray.errors import InfeasibleError, UnknownNameError
from deft_ray.planners import get_scheme, scheme_names, solve

from .conftest import make_device, make_instance, small_random_instances
from .oracles import brute_force_joint_optimum
from .populations import paper_family

MATCHING_BASELINES = ["random", "greedy", "depth-unaware", "random-bw", "greedy-bw", "depth-unaware-bw"]


def test_registry_lists_every_scheme_and_rejects_unknown_names():
    assert {"crunch", "jbba", "exact", "single-device", *MATCHING_BASELINES} <= set(scheme_names(aliases=False))
    assert {"exact-bisection", "optimal"} <= set(scheme_names()) - set(scheme_names(aliases=False))
    with pytest.raises(UnknownNameError, match=r"unknown scheme 'jbb'; valid schemes: crunch, jbba, "):
        get_scheme("jbb")


@pytest.mark.parametrize("alias", ["exact-bisection", "optimal"])
def test_old_names_are_aliases_of_exact(alias):
    instance = make_instance(num_blocks=3, num_devices=5)
    assert type(get_scheme(alias)) is type(get_scheme("exact"))
    plan = solve(instance, alias)
    assert plan.scheme == alias  # the name asked for, so ledgers keyed by it keep working
    assert plan.assignment == solve(instance, "exact").assignment


def test_exact_equals_an_independent_brute_force():
    """Every matching with nested-bisection bandwidth (tests/planners/oracles.py): no shared code."""
    checked = 0
    for instance in small_random_instances(60, seed=77):
        if instance.num_devices > 5:
            continue
        assert solve(instance, "exact").round_latency_s == pytest.approx(brute_force_joint_optimum(instance), rel=1e-9)
        checked += 1
    assert checked >= 25


def test_exact_is_never_beaten_on_paper_like_populations():
    for instance in paper_family(24, seed=5):
        exact = solve(instance, "exact").round_latency_s
        for name in ("jbba", "crunch", "greedy-bw", "depth-unaware-bw"):
            assert exact <= solve(instance, name).round_latency_s * (1 + 1e-12), name


def test_baselines_never_beat_the_optimum(random_instances):
    for instance in random_instances[:120]:
        optimum = solve(instance, "exact").round_latency_s
        for name in MATCHING_BASELINES:
            assert solve(instance, name, seed=1).round_latency_s >= optimum * (1 - 1e-12)
        for name in ("random", "greedy", "depth-unaware"):  # optimal bandwidth never hurts a matching
            assert solve(instance, f"{name}-bw", seed=1).round_latency_s <= solve(instance, name, seed=1).round_latency_s * (1 + 1e-9)
        assert solve(instance, "crunch").round_latency_s <= solve(instance, "greedy").round_latency_s * (1 + 1e-12)


def test_random_is_seeded():
    instance = make_instance(num_blocks=3, num_devices=7)
    plans = {seed: solve(instance, "random", seed=seed).assignment for seed in range(6)}
    assert solve(instance, "random", seed=3).assignment == plans[3]
    assert len({tuple(sorted(p.items())) for p in plans.values()}) > 1


def test_greedy_puts_the_deepest_block_on_the_fastest_computing_device():
    instance = make_instance(num_blocks=2, num_devices=3)
    instance = instance.__class__(bandwidth_hz=1e6, blocks=instance.blocks, devices=(
        make_device("slow", compute_scale=3.0, spectral_efficiency=9.0),
        make_device("fast", compute_scale=1.0, spectral_efficiency=0.5),
        make_device("mid", compute_scale=2.0, spectral_efficiency=9.0)))
    assert solve(instance, "greedy").assignment == {"fast": (0,), "mid": (1,)}


def test_depth_unaware_ignores_depth():
    """With two devices for two blocks, a depth-aware matching puts the deep block on the fast
    device; the depth-unaware one pairs them without looking at depth, so on this instance it is
    slower than crunch."""
    instance = make_instance(num_blocks=2, num_devices=2)
    instance = instance.__class__(bandwidth_hz=1e9, blocks=instance.blocks,
                                  devices=(make_device("slow", compute_scale=3.0), make_device("fast", compute_scale=1.0)))
    unaware, aware = solve(instance, "depth-unaware"), solve(instance, "crunch")
    assert aware.assignment == {"fast": (0,), "slow": (1,)}
    assert unaware.assignment == {"slow": (0,), "fast": (1,)}
    assert unaware.round_latency_s > aware.round_latency_s


def test_single_device_trains_every_block_on_one_device():
    instance = make_instance(num_blocks=3, num_devices=2)
    plan = solve(instance, "single-device")
    assert list(plan.assignment.values()) == [(0, 1, 2)]
    device = next(iter(plan.assignment))
    assert plan.bandwidth_hz == {device: instance.bandwidth_hz}
    # compute of the deepest block, three payloads at the whole band
    scale = instance.devices[instance.device_names.index(device)].compute_scale
    assert plan.round_latency_s == pytest.approx(scale * 1.0 + 3e6 / (1e6 * 2.0))


def test_single_device_needs_a_device_that_holds_everything():
    instance = make_instance(num_blocks=2, num_devices=2)
    instance = instance.__class__(bandwidth_hz=1e6, blocks=instance.blocks,
                                  devices=(make_device("a", memory_bytes=4.2e8), make_device("b", memory_bytes=4.1e8)))
    with pytest.raises(InfeasibleError, match=r"training every block needs 5e\+08 bytes but the largest budget is 4.2e\+08"):
        solve(instance, "single-device")
