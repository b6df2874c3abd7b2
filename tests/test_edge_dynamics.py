"""The living edge without learning: shadowing, mobility, channel traces and availability, their
statistics, their files' errors, and their reproducibility from the seed and a saved state."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from deft_ray.config import RunConfig, config_from_dict
from deft_ray.edge.availability import Availability, MarkovOnOff, OnlineIntervals, read_availability_trace
from deft_ray.edge.channel_trace import TraceProblem, read_channel_trace
from deft_ray.edge.dynamics import EdgeDynamics
from deft_ray.edge.mobility import Mobility
from deft_ray.edge.shadowing import Shadowing
from deft_ray.errors import InputError

NAMES = [f"d-{i}" for i in range(5)]


def shadowing_db(shadowing: Shadowing, steps: int, dt_s: float) -> np.ndarray:
    """steps x devices: the dB values read back from the linear factors, one look every dt_s."""
    rows = []
    for step in range(steps):
        shadowing.advance_to((step + 1) * dt_s)
        rows.append([10 * math.log10(shadowing.factors()[n]) for n in NAMES])
    return np.array(rows)


# ------------------------------------------------------------------------------ shadowing
@pytest.mark.parametrize("coherence_s, dt_s", [(0.0, 3.0), (10.0, 5.0), (2.0, 0.5)])
def test_shadowing_has_its_db_std_and_gauss_markov_correlation(coherence_s, dt_s):
    db = shadowing_db(Shadowing(NAMES, std_db=8.0, coherence_s=coherence_s, seed=3), steps=6000, dt_s=dt_s)
    assert db.std() == pytest.approx(8.0, rel=0.04)
    assert abs(db.mean()) < 0.5
    expected = math.exp(-dt_s / coherence_s) if coherence_s else 0.0
    lag1 = np.mean([np.corrcoef(db[:-1, k], db[1:, k])[0, 1] for k in range(len(NAMES))])
    assert lag1 == pytest.approx(expected, abs=0.03)
    devices = np.corrcoef(db.T)[np.triu_indices(len(NAMES), 1)]
    assert np.abs(devices).max() < 0.1  # devices shadow independently


def test_no_shadowing_is_a_factor_of_one_and_time_cannot_go_back():
    shadowing = Shadowing(NAMES, std_db=0.0, coherence_s=0.0, seed=0)
    shadowing.advance_to(12.0)
    assert set(shadowing.factors().values()) == {1.0}
    with pytest.raises(ValueError, match="back in time"):
        shadowing.advance_to(1.0)


# ------------------------------------------------------------------------------ mobility
def test_mobility_stays_in_range_and_walks_speed_times_dt():
    low, high, speed, dt = 50.0, 150.0, 2.0, 3.0
    mobility = Mobility(NAMES, start_m=np.linspace(low, high, 5), low_m=[low] * 5, high_m=[high] * 5,
                        speed_mps=[speed] * 5, seed=1)
    before = np.array(list(mobility.distances().values()))
    free_steps = 0
    for step in range(3000):
        mobility.advance_to((step + 1) * dt)
        after = np.array(list(mobility.distances().values()))
        assert np.all((after >= low) & (after <= high))
        moved = np.abs(after - before)
        assert np.all(moved <= speed * dt + 1e-9)
        far = (before - low > speed * dt) & (high - before > speed * dt)  # no bound within reach
        np.testing.assert_allclose(moved[far], speed * dt)
        free_steps += far.sum()
        before = after
    assert free_steps > 10000
    assert before.std() > 10  # they spread over the range


def test_mobility_reflects_at_the_bounds():
    seen = set()
    for seed in range(12):
        mobility = Mobility(["a", "b"], start_m=[148.0, 52.0], low_m=[50.0, 50.0], high_m=[150.0, 150.0],
                            speed_mps=[6.0, 6.0], seed=seed)
        mobility.advance_to(1.0)  # 6 m: inwards, or out to the bound and back
        position = mobility.distances()
        seen.add((position["a"], position["b"]))
    assert {a for a, _ in seen} == {142.0, 146.0} and {b for _, b in seen} == {58.0, 54.0}


def test_static_devices_do_not_move():
    mobility = Mobility(NAMES, start_m=[60.0] * 5, low_m=[50.0] * 5, high_m=[150.0] * 5, speed_mps=[0.0] * 5, seed=0)
    mobility.advance_to(1e6)
    assert set(mobility.distances().values()) == {60.0}


# ------------------------------------------------------------------------------ availability
def test_markov_online_fraction_and_sojourns_match_their_means():
    mean_on, mean_off, step = 30.0, 10.0, 0.5
    fractions, on_spells = [], []
    for k in range(4):
        device = MarkovOnOff(f"d-{k}", mean_online_s=mean_on, mean_offline_s=mean_off, seed=5)
        states = np.array([device.state_at(t)[0] for t in np.arange(0.0, 40000.0, step)])
        fractions.append(states.mean())
        changes = np.flatnonzero(np.diff(states.astype(int)))
        lengths = np.diff(changes) * step
        on_spells.extend(lengths[states[changes[:-1] + 1]])
    assert np.mean(fractions) == pytest.approx(mean_on / (mean_on + mean_off), abs=0.02)
    assert np.mean(on_spells) == pytest.approx(mean_on, rel=0.08)


def test_interval_availability_and_its_next_change():
    availability = Availability({"a": OnlineIntervals([(0.0, 10.0), (10.0, 20.0), (50.0, 60.0)]),
                                 "b": OnlineIntervals([])})
    assert availability.online(["a", "b", "c"], 5.0) == ("a", "c")  # c has no timeline: always online
    assert availability.online_until_s("a", 5.0) == 20.0  # adjacent intervals are one spell
    assert availability.online(["a", "b"], 20.0) == ()
    assert availability.next_online_s(["a", "b"], 25.0) == 50.0
    assert availability.next_online_s(["a", "b"], 60.0) is None
    assert availability.online_until_s("b", 3.0) == 3.0


# ------------------------------------------------------------------------------ traces
def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_channel_trace_replaces_the_model_from_its_first_row_and_holds_the_last(tmp_path):
    path = write(tmp_path, "gains.csv", "round,device,channel_gain,note\n2,d-0,1e-9,x\n4,d-0,3e-9,\n1,d-1,5e-10,\n")
    trace = read_channel_trace(path, NAMES)
    assert [trace.gain("d-0", r) for r in (1, 2, 3, 4, 5, 99)] == [None, 1e-9, 1e-9, 3e-9, 3e-9, 3e-9]
    assert trace.gain("d-1", 7) == 5e-10 and trace.gain("d-2", 1) is None


@pytest.mark.parametrize("text, match", [
    ("round,device\n1,d-0\n", r"line 1: has no column 'channel_gain'"),
    ("round,device,channel_gain\n1,d-0,1e-9\n2,d-0,-3\n", r"line 3: channel_gain = '-3' must be a positive number"),
    ("round,device,channel_gain\n1,d-0,0\n", r"line 2: channel_gain = '0'"),
    ("round,device,channel_gain\n1,phone-9,1e-9\n", r"line 2: device = 'phone-9' is not a device of the run"),
    ("round,device,channel_gain\nzero,d-0,1e-9\n", r"line 2: round = 'zero' is not a round"),
    ("round,device,channel_gain\n1,d-0,1e-9\n1,d-0,2e-9\n", r"line 3: round 1 of device 'd-0' is given twice"),
])
def test_bad_channel_traces_name_the_line_and_field(tmp_path, text, match):
    with pytest.raises(TraceProblem, match=match):
        read_channel_trace(write(tmp_path, "bad.csv", text), NAMES)


@pytest.mark.parametrize("data, match", [
    ([], r"holds a list, not an object"),
    ({"phone-9": []}, r"device 'phone-9': is not a device of the run"),
    ({"d-0": [[0, 10], [5, 20]]}, r"device 'd-0' interval 1: \[5, 20\] must start at or after 10"),
    ({"d-0": [[3, 3]]}, r"device 'd-0' interval 0"),
    ({"d-0": [[0, "x"]]}, r"device 'd-0' interval 0: \[0, \"x\"\] is not \[start_s, end_s\]"),
    ({"d-0": 5}, r"device 'd-0': must map to a list"),
])
def test_bad_availability_traces_name_the_device_and_interval(tmp_path, data, match):
    with pytest.raises(TraceProblem, match=match):
        read_availability_trace(write(tmp_path, "bad.json", json.dumps(data)), NAMES)


def test_trace_errors_are_config_errors_naming_the_key_and_file(tmp_path):
    bad = write(tmp_path, "bad.csv", "round,device,channel_gain\n1,fast-0,-1\n")
    with pytest.raises(InputError, match=rf"network.channel_trace = '{bad}': line 2: channel_gain = '-1'"):
        config_from_dict({"network": {"channel_trace": bad}, "devices": [{"name": "fast", "count": 2}]})
    with pytest.raises(InputError, match=r"reliability.availability_trace = '/nowhere.json': no such file"):
        config_from_dict({"reliability": {"availability_trace": "/nowhere.json"}})
    with pytest.raises(InputError, match=r"devices\[0\].mean_offline_s = 5.0: is given without its partner"):
        config_from_dict({"devices": [{"name": "a", "mean_offline_s": 5}]})
    with pytest.raises(InputError, match=r"devices\[0\].speed_mps = -1: must not be negative"):
        config_from_dict({"devices": [{"name": "a", "speed_mps": -1}]})


@pytest.mark.parametrize("assignment, message", [
    ("network.channel_trace={bad}", "network.channel_trace = '{bad}': line 2: channel_gain = '-1' must be a positive"),
    ("network.shadowing_db=-2", "network.shadowing_db = -2: must not be negative"),
    ("reliability.availability_trace={missing}", "reliability.availability_trace = '{missing}': no such file"),
])
def test_bad_edge_settings_exit_2_with_one_line(tmp_path, assignment, message):
    paths = {"bad": write(tmp_path, "bad.csv", "round,device,channel_gain\n1,phone-0,-1\n"),
             "missing": str(tmp_path / "missing.json")}
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--set", assignment.format(**paths)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(**paths) in lines[0], result.stderr


# ------------------------------------------------------------------------------ the edge of a run
def living_config(**network) -> RunConfig:
    return config_from_dict({
        "seed": 4, "network": {"shadowing_db": 6.0, "shadowing_coherence_s": 5.0, "rayleigh_fading": True, **network},
        "devices": [{"name": "walker", "count": 3, "distance_m": [50, 300], "speed_mps": 4.0,
                     "mean_online_s": 20.0, "mean_offline_s": 5.0},
                    {"name": "still", "count": 2, "distance_m": [100, 200]}]})


def specs_of(config: RunConfig):
    return config.device_specs([type("Block", (), {"memory_bytes": 1.0})()])


def test_gain_is_path_loss_at_the_distance_times_shadowing_times_fading():
    config = living_config()
    edge = EdgeDynamics(config, specs_of(config))
    edge.advance_to(7.0)
    names = [s.name for s in specs_of(config)]
    gains = edge.gains(names, 1, np.random.default_rng(11))
    fading = np.random.default_rng(11).exponential(1.0, size=len(names))
    for name, h in zip(names, fading):
        distance = edge.mobility.distances()[name]
        path_loss = 10 ** (-(128.1 + 37.6 * math.log10(distance / 1000)) / 10)
        assert gains[name] == pytest.approx(path_loss * edge.shadowing.factors()[name] * h, rel=1e-12)
    assert edge.mobility.distances()["still-0"] == 100.0 and edge.mobility.distances()["walker-0"] != 50.0


def test_trace_gains_replace_the_model(tmp_path):
    path = write(tmp_path, "g.csv", "round,device,channel_gain\n2,still-1,4e-12\n")
    config = living_config(channel_trace=path)
    edge = EdgeDynamics(config, specs_of(config))
    rng = np.random.default_rng(0)
    assert edge.gains(["still-1"], 1, rng)["still-1"] != 4e-12
    assert edge.gains(["still-1", "walker-0"], 3, rng)["still-1"] == 4e-12


def walk(edge: EdgeDynamics, names, times, rng) -> list:
    out = []
    for t in times:
        edge.advance_to(t)
        out.append((edge.gains(names, 1, rng), edge.availability.online(names, t)))
    return out


def test_the_edge_is_reproducible_from_its_seed_and_from_a_saved_state():
    config = living_config()
    names = [s.name for s in specs_of(config)]
    times = np.cumsum(np.full(40, 2.5))
    whole = walk(EdgeDynamics(config, specs_of(config)), names, times, np.random.default_rng(1))
    assert whole == walk(EdgeDynamics(config, specs_of(config)), names, times, np.random.default_rng(1))
    assert len({online for _, online in whole}) > 1  # devices come and go

    first = EdgeDynamics(config, specs_of(config))
    rng = np.random.default_rng(1)
    head = walk(first, names, times[:15], rng)
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
    resumed = EdgeDynamics(config, specs_of(config))
    resumed.load_state_dict(state)
    assert head + walk(resumed, names, times[15:], rng) == whole
    other = walk(EdgeDynamics(dataclass_replace(config, seed=5), specs_of(config)), names, times, np.random.default_rng(1))
    assert other != whole


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)
