import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from deft_ray.config import (RunConfig, apply_overrides, config_from_dict, dump_config, load_config,
                             parse_assignments)
from deft_ray.errors import InputError


def test_defaults_round_trip_through_yaml(tmp_path):
    config = RunConfig()
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert config.num_devices == 12


@pytest.mark.parametrize("data, match", [
    ({"rounds": 0}, r"rounds = 0: must be positive"),
    ({"rounds": "ten"}, r"rounds = 'ten': must be a whole number"),
    ({"roudns": 3}, r"roudns = 3: unknown key; valid keys here: seed, rounds"),
    ({"network": {"bandwidth_hz": -1}}, r"network.bandwidth_hz = -1: must be positive"),
    ({"clock": "fast"}, r"clock = 'fast': is not a valid choice; use one of virtual, realtime"),
    ({"scheme": "best"}, r"scheme = 'best': is not a scheme; use one of crunch, jbba"),
    ({"data": {"task": "imdb"}}, r"data.task = 'imdb': is not a task"),
    ({"data": {"data_dir": "/nowhere"}}, r"data.data_dir = '/nowhere': is not a folder"),
    ({"scheme": "fedavg", "optimizer": {"schedule": "cosine"}},
     r"optimizer.schedule = 'cosine': applies to the server's steps, and scheme fedavg trains on the devices"),
    ({"rounds": 5, "optimizer": {"warmup_rounds": 5}}, r"optimizer.warmup_rounds = 5: leaves no round after"),
    ({"optimizer": {"schedule": "step"}}, r"optimizer.schedule = 'step': is not a valid choice; use one of constant, linear, cosine"),
    ({"devices": [{"name": "a", "count": 0}]}, r"devices\[0\].count = 0: must be positive"),
    ({"devices": [{"count": 2}]}, r"devices\[0\].name"),
    ({"devices": [{"name": "a", "distance_m": [500, 50]}]}, r"devices\[0\].distance_m = \[500.0, 50.0\]"),
    ({"network": {"upload_dtype": "int4"}}, r"network.upload_dtype = 'int4': is not a valid choice; use one of float32"),
    ({"devices": [{"name": "a", "compute_power_w": -5}]}, r"devices\[0\].compute_power_w = -5: must not be negative"),
    ({"devices": [{"name": "a", "energy_budget_j": 0}]}, r"devices\[0\].energy_budget_j = 0: must be positive"),
    ({"scheme": "greedy", "devices": [{"name": "a", "energy_budget_j": 5}]},
     r"scheme = 'greedy': does not plan with energy budgets \(group 'a' has one\); use scheme crunch, jbba or exact"),
])
def test_bad_config_names_field_value_and_fix(data, match):
    with pytest.raises(InputError, match=match):
        config_from_dict(data)


def test_overrides_use_dotted_keys():
    config = apply_overrides(RunConfig(), {"data.task": "sst2", "rounds": 7, "seed": None})
    assert config.data.task == "sst2" and config.rounds == 7 and config.seed == 0


@pytest.mark.parametrize("argv, message", [
    (["--devices", "0"], "--devices = 0: must be at least 1"),
    (["--rounds", "-1"], "rounds = -1: must be positive"),
    (["--task", "imdb"], "data.task = 'imdb': is not a task"),
    (["--scheme", "fastest"], "scheme = 'fastest': is not a scheme"),
    (["--data-dir", "/nowhere"], "data.data_dir = '/nowhere': is not a folder"),
    (["--model", "/nowhere/model"], "model.name_or_path = '/nowhere/model': cannot be loaded"),
    (["--devices", "4"], "devices = 4: scheme 'jbba' gives each device at most one block and the model has 6"),
    (["--config", "/nowhere.yaml"], "--config = '/nowhere.yaml': no such file"),
    (["--straggler-deadline", "0.5"], "reliability.straggler_deadline = 0.5: is below 1"),
    (["--checkpoint-every", "-1"], "reliability.checkpoint_every = -1: must not be negative"),
    (["--resume", "/nowhere"], "--resume = '/nowhere': is not a run directory"),
    (["--resume", "/nowhere", "--config", "x.yaml"], "--config = 'x.yaml': cannot be combined with --resume"),
    (["--resume", "/nowhere", "--scheme", "crunch"], "--scheme = 'crunch': cannot change when resuming"),
])
def test_bad_run_options_exit_2_with_one_line_before_ray_starts(argv, message):
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", *argv], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize("yaml_text, message", [
    ("network: {bandwidth_hz: 0}", "network.bandwidth_hz = 0: must be positive"),
    ("network: {bandwidth_hz: -5.0e6}", "network.bandwidth_hz = -5000000.0: must be positive"),
    ("rounds: ten", "rounds = 'ten': must be a whole number"),
    ("colour: red", "colour = 'red': unknown key"),
    ("devices: [{name: a, count: 8, memory_fraction: 0.5}, {name: b, count: 4, memory_fraction: 0.9}]",
     "devices[1].memory_fraction = 0.9: is the largest and below 1, so no device can hold block 0"),
    ("profile: minilm-l6_cpu_fp32\ndevices: [{name: a, count: 8, memory_bytes: 1.0e8}, {name: b, count: 4, "
     "memory_bytes: 1.8e8}]", "blocks[0].memory_bytes = 1.876e+08: no device can hold it"),
    ("profile: minilm-l6_cpu_fp32\ndevices: [{name: a, count: 8, memory_bytes: 1.3e8}, {name: b, count: 2, "
     "memory_bytes: 1.9e8}]", "memory budgets: blocks 0..2 each need at least 1.561e+08 bytes but only 2"),
    ("scheme: fedavg\nprofile: minilm-l6_cpu_fp32\ndevices: [{name: a, count: 8, memory_bytes: 1.0e8}, "
     "{name: b, count: 4, memory_bytes: 1.5e8}]", "fedavg: training every block needs 1.876e+08 bytes"),
])
def test_bad_config_file_exits_2_with_one_line_before_ray_starts(tmp_path, yaml_text, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text + "\n")
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--config", str(path), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_malformed_tsv_row_exits_2_before_ray_starts(tmp_path):
    folder = tmp_path / "glue" / "sst2"
    folder.mkdir(parents=True)
    rows = "sentence1\tsentence2\tlabel\ngood movie\t\t1\nbad movie\t\tseven\n"
    for split in ("train", "validation"):
        (folder / f"{split}.tsv").write_text(rows)
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--task", "sst2", "--data-dir",
                             str(tmp_path / "glue"), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("train.tsv line 3 = 'seven': label is not a class id in 0..1; "
                                          "fix the label in that row")
    assert "Traceback" not in result.stderr and "Started a local Ray" not in result.stderr


def test_bad_yaml_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rounds: 3\ndata: [unclosed\n")
    with pytest.raises(InputError, match=r"--config line \d+ = .*: is not valid YAML"):
        load_config(path)


def test_set_reaches_any_key_with_yaml_typed_values():
    overrides = parse_assignments(["network.bandwidth_hz=5e6", "data.batch_size=8",
                                   "model.target_modules=[query, key, value]", "target_metric=null"])
    config = apply_overrides(RunConfig(), overrides)
    assert config.network.bandwidth_hz == 5e6 and config.data.batch_size == 8
    assert config.model.target_modules == ("query", "key", "value") and config.target_metric is None


@pytest.mark.parametrize("assignment, message", [
    ("network.bandwith_hz=5e6", "network.bandwith_hz = '5e6': unknown key; valid keys here: bandwidth_hz, "
                                "noise_dbm_per_hz, rate_model, rayleigh_fading"),
    ("netwrk.bandwidth_hz=5e6", "--set netwrk.bandwidth_hz = '5e6': netwrk is not a section; sections here: "
                                "model, data"),
    ("data.batch_size=eight", "data.batch_size = 'eight': must be a whole number"),
    ("rounds", "--set = 'rounds': is not KEY=VALUE"),
    ("network.upload_dtype=fp8", "network.upload_dtype = 'fp8': is not a valid choice; use one of float32, float16, "
                                 "bfloat16, int8"),
])
def test_bad_set_exits_2_with_one_line(assignment, message):
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--set", assignment], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_a_config_built_in_python_is_validated():
    with pytest.raises(ValueError, match="greater than 0"):
        RunConfig(rounds=0)
    with pytest.raises(ValueError, match="is not a scheme"):
        dataclasses.replace(RunConfig(), scheme="fastest")


def test_every_config_key_is_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()

    def keys(cls, prefix):
        for field in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[field.name]
            inner = next((a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)), None)
            if inner is not None:
                yield from keys(inner, f"{prefix}{field.name}[i]." if field.name == "devices" else f"{prefix}{field.name}.")
            else:
                yield prefix + field.name

    missing = [key for key in keys(RunConfig, "") if f"`{key}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"
