"""The decoder keys of the model and data sections, and the shipped decoder configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from deft_ray.config import RunConfig, apply_overrides, load_config
from deft_ray.errors import InputError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_take_peft_targets_and_a_float32_backbone():
    config = RunConfig()
    assert config.model.target_modules == "auto" and config.model.dtype == "float32"
    spec = config.model.lora_spec(model_kind="causal-lm")
    assert spec.target_modules == "auto" and spec.backbone_dtype == "float32" and spec.model_kind == "causal-lm"


@pytest.mark.parametrize("overrides, message", [
    ({"model.target_modules": "query"}, "model.target_modules = 'query': must be auto or a list of module names"),
    ({"model.target_modules": ["auto"]}, "model.target_modules = ['auto']: must be auto or module names"),
    ({"model.dtype": "int8"}, "model.dtype = 'int8': is not a valid choice"),
    ({"data.task": "instruction"}, "data.train_file = None: task 'instruction' needs examples"),
    ({"data.task": "text", "data.train_file": "/no/such.jsonl"}, "data.train_file = '/no/such.jsonl': no such file"),
    ({"data.dataset": "tatsu-lab/alpaca"}, "data.dataset = 'tatsu-lab/alpaca': is not read by task 'synthetic-sentiment'"),
    ({"data.task": "synthetic-instructions", "data.partition": "dirichlet"}, "data.partition = 'dirichlet': needs class labels"),
])
def test_bad_decoder_settings_are_one_line_naming_the_field(overrides, message):
    with pytest.raises(InputError) as raised:
        apply_overrides(load_config(None), overrides)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_both_sources_are_refused(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    with pytest.raises(InputError, match="data.dataset = 'x': is given with data.train_file"):
        apply_overrides(load_config(None), {"data.task": "instruction", "data.dataset": "x",
                                            "data.train_file": str(tmp_path / "train.jsonl")})


def test_shipped_decoder_configs_load():
    tiny = load_config(CONFIGS / "llm-tiny.yaml")
    assert tiny.data.task == "synthetic-instructions" and tiny.model.name_or_path == "builtin:tiny-decoder"
    real = load_config(CONFIGS / "llm-instruction.yaml")
    assert real.data.task == "instruction" and real.data.dataset and real.model.dtype == "bfloat16"


def test_the_builtin_decoder_is_built_once_offline(tmp_path, monkeypatch):
    from transformers import AutoConfig

    monkeypatch.setenv("DEFT_RAY_CACHE", str(tmp_path))
    path = load_config(CONFIGS / "llm-tiny.yaml").model.path
    assert Path(path).parent == tmp_path and AutoConfig.from_pretrained(path).num_hidden_layers == 6
    stamp = (Path(path) / "config.json").stat().st_mtime_ns
    assert load_config(CONFIGS / "llm-tiny.yaml").model.path == path
    assert (Path(path) / "config.json").stat().st_mtime_ns == stamp
