import json
from dataclasses import replace

import pytest

from deft_ray.errors import InfeasibleError, InputError
from deft_ray.planners import (
    Instance,
    Plan,
    check_matching_feasible,
    evaluate,
    make_monotone,
    solve,
)

from .conftest import make_device, make_instance


def instance_dict(**overrides):
    data = {
        "bandwidth_hz": 1e7,
        "blocks": [{"compute_s": 0.8, "memory_bytes": 8e8, "payload_bits": 786432},
                   {"compute_s": 0.5, "memory_bytes": 4e8, "payload_bits": 786432}],
        "devices": [{"name": "d0", "compute_scale": 2.5, "memory_bytes": 2e9, "spectral_efficiency": 3.1},
                    {"name": "d1", "compute_scale": 1.0, "memory_bytes": 4e9, "tx_power_w": 0.2,
                     "channel_gain": 1e-11}],
    }
    data.update(overrides)
    return data


def test_instance_json_round_trip():
    instance = Instance.from_dict(instance_dict())
    assert instance.num_blocks == 2 and instance.num_devices == 2
    assert Instance.from_json(json.dumps(instance.to_dict())) == instance
    assert [d.rate_model for d in instance.devices] == ["spectral_efficiency", "shannon"]


@pytest.mark.parametrize("overrides, match", [
    (dict(bandwidth_hz=0), r"bandwidth_hz = 0: must be positive"),
    (dict(bandwidth_hz=-5), r"bandwidth_hz = -5: must be positive"),
    (dict(bandwidth_hz="10MHz"), r"bandwidth_hz = '10MHz': not a finite number"),
    (dict(blocks=[]), r"instance.blocks = \[\]: missing or empty"),
    (dict(devices=[{"name": "d0", "compute_scale": 1, "memory_bytes": 1e9}]), r"devices\[0\].*no uplink channel"),
    (dict(devices=[{"name": "d0", "compute_scale": 1, "memory_bytes": 1e9, "spectral_efficiency": 1,
                    "tx_power_w": 0.2, "channel_gain": 1e-11}]), r"both rate models"),
    (dict(devices=[{"name": "d0", "compute_scale": 1, "memory_bytes": 1e9, "spectral_efficiency": 1},
                   {"name": "d0", "compute_scale": 1, "memory_bytes": 1e9, "spectral_efficiency": 1}]),
     r"duplicate device name"),
    (dict(speed=3), r"instance.speed = 3: unknown field"),
    (dict(blocks=[{"compute_s": 0.8, "memory_bytes": 8e8}]), r"blocks\[0\].payload_bits = None: missing"),
])
def test_bad_instances_name_field_and_value(overrides, match):
    with pytest.raises(InputError, match=match):
        Instance.from_dict(instance_dict(**overrides))


def test_malformed_json_says_where():
    with pytest.raises(InputError, match=r"instance line 1 column 22 = .*: not valid JSON"):
        Instance.from_json('{"bandwidth_hz": 1e7,,}')


def test_make_monotone_raises_dips_and_says_so():
    instance = make_instance(num_blocks=3)
    blocks = list(instance.blocks)
    blocks[0] = type(blocks[0])(compute_s=0.5, memory_bytes=blocks[0].memory_bytes, payload_bits=1e6)
    noisy = Instance(bandwidth_hz=1e6, blocks=tuple(blocks), devices=instance.devices)
    fixed, notes = make_monotone(noisy)
    assert fixed.block_compute_s().tolist() == [0.8, 0.8, 0.6]
    assert len(notes) == 1 and "compute_s" in notes[0] and "[0]" in notes[0]
    assert make_monotone(instance) == (instance, ())


def test_evaluate_scores_and_flags_violations():
    instance = make_instance(num_blocks=2, num_devices=3)
    plan = Plan(scheme="hand", assignment={"d0": (0,), "d1": (1,)}, bandwidth_hz={"d0": 5e5, "d1": 5e5},
                device_latency_s={}, round_latency_s=0, solve_time_s=0)
    scored = evaluate(instance, plan)
    assert scored.feasible
    # d0: 1 * 1.0 s + 1e6 bits / (5e5 Hz * 2 bit/s/Hz) = 2 s; d1: 2 * 0.8 + 1 = 2.6 s
    assert scored.device_latency_s == pytest.approx({"d0": 2.0, "d1": 2.6})
    assert scored.round_latency_s == pytest.approx(2.6) and scored.bottleneck_device == "d1"

    bad = Plan(scheme="hand", assignment={"d0": (0, 1), "d9": (1,)}, bandwidth_hz={"d0": 2e6},
               device_latency_s={}, round_latency_s=0, solve_time_s=0)
    violations = " ".join(evaluate(instance, bad, max_blocks_per_device=1).violations)
    assert "'d9' is not in the instance" in violations
    assert "takes 2 blocks" in violations
    assert "above the total" in violations


def test_evaluate_set_costs_follow_its_lowest_block():
    instance = make_instance(num_blocks=3, num_devices=3)
    plan = Plan(scheme="hand", assignment={"d0": (1, 2), "d1": (0,)}, bandwidth_hz={"d0": 5e5, "d1": 5e5},
                device_latency_s={}, round_latency_s=0, solve_time_s=0)
    scored = evaluate(instance, plan)
    assert scored.compute_s["d0"] == pytest.approx(0.8)  # max over blocks 1 and 2
    assert scored.upload_s["d0"] == pytest.approx(2.0)   # two payloads


def test_matching_feasibility_messages():
    with pytest.raises(InfeasibleError, match="2 devices for 3 blocks"):
        check_matching_feasible(make_instance(num_blocks=3, num_devices=2))
    small = make_instance(num_blocks=2, num_devices=2)
    starved = replace(small, devices=tuple(replace(d, memory_bytes=4.5e8) for d in small.devices))
    with pytest.raises(InfeasibleError, match=r"blocks\[0\].memory_bytes = 5e\+08: no device can hold it"):
        check_matching_feasible(starved)
    one_big = replace(small, devices=(make_device("big", memory_bytes=6e8), make_device("tiny", memory_bytes=1e8)))
    with pytest.raises(InfeasibleError, match=r"blocks 0..1 each need at least 4e\+08 bytes but only 1"):
        check_matching_feasible(one_big)


@pytest.mark.parametrize("text, match", [
    ('{"bandwidth_hz": ' + "9" * 400 + "}", r"bandwidth_hz = inf: not a finite number"),
    ("[" * 100_000 + "]" * 100_000, r"nests arrays or objects too deeply"),
    ('{"bandwidth_hz": NaN}', r"instance = 'NaN': is not a finite number"),
    ('{"bandwidth_hz": -Infinity}', r"instance = '-Infinity': is not a finite number"),
    ('{"bandwidth_hz": 1e400}', r"bandwidth_hz = inf: not a finite number"),
    ("", r"instance line 1 column 1 = '': not valid JSON"),
    ("[1, 2]", r"instance = 'list': the instance must be a JSON object"),
])
def test_malformed_text_is_one_input_error(text, match):
    with pytest.raises(InputError, match=match) as error:
        Instance.from_json(text)
    assert "\n" not in str(error.value)


def test_a_name_with_a_lone_surrogate_is_refused():
    data = instance_dict()
    data["devices"][0]["name"] = "d\ud800"
    with pytest.raises(InputError, match=r"devices\[0\].name = .*is not valid text"):
        Instance.from_json(json.dumps(data))


def test_huge_integers_in_a_parsed_dict_are_refused():
    with pytest.raises(InputError, match=r"bandwidth_hz = 'an integer beyond the float range'"):
        Instance.from_dict(instance_dict(bandwidth_hz=10 ** 400))


def test_plan_json_round_trip_and_malformed_plans():
    plan = solve(make_instance(num_blocks=2, num_devices=3), "jbba")
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    good = plan.to_dict()
    for key, value, match in [("assignment", {"d0": [0.5]}, "non-negative integers"),
                              ("assignment", {"d0": [-1]}, "non-negative integers"),
                              ("bandwidth_hz", {"d0": "wide"}, "not a number"),
                              ("round_latency_s", None, "not a number"),
                              ("diagnostics", [3], "not a list of strings"),
                              ("scheme", 7, "not a string")]:
        with pytest.raises(InputError, match=match):
            Plan.from_dict({**good, key: value})
    missing = dict(good)
    del missing["solve_time_s"]
    with pytest.raises(InputError, match=r"plan.solve_time_s = None: missing"):
        Plan.from_dict(missing)
    with pytest.raises(InputError, match="a plan must be an object"):
        Plan.from_dict([good])
