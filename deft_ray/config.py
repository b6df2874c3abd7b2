"""The typed configuration of a run: one tree, loaded from YAML, validated here, dumped with the run.

Every section is a frozen, keyword-only dataclass whose fields carry their help as a docstring.
:func:`load_config` reads YAML (unknown keys, wrong types and bad values raise
:class:`~deft_ray.errors.InputError` naming the dotted field, the value and the fix) and
:func:`apply_overrides` applies command-line values on dotted keys. Nothing here imports torch or
Ray, so a bad config fails before any process starts.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from deft_ray.errors import InputError


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    name_or_path: str = ""
    """Hugging Face model id or folder; empty means the packaged all-MiniLM-L6-v2."""
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")
    head_with: Literal["last", "server"] = "last"
    """Which block the classification head travels with: the last layer's, or a server-side block."""
    max_length: int = 64
    """Tokens per example (padding and truncation)."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    task: str = "synthetic-sentiment"
    """sst2, rte, mrpc, stsb (GLUE) or synthetic-sentiment (built in, no network)."""
    data_dir: str | None = None
    """Folder with <task>/train.tsv and <task>/validation.tsv; without it GLUE comes from the hub."""
    partition: Literal["iid", "dirichlet"] = "iid"
    dirichlet_alpha: float = 0.5
    batch_size: int = 16
    """Examples per device per round."""
    max_train_examples: int | None = None
    max_eval_examples: int | None = 512


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    bandwidth_hz: float = 1e7
    """Total uplink bandwidth shared by the devices."""
    noise_dbm_per_hz: float = -174.0
    rate_model: Literal["shannon", "spectral_efficiency"] = "shannon"
    rayleigh_fading: bool = False
    """Redraw |h|^2 ~ Exp(1) for every device every round."""


@dataclass(frozen=True, kw_only=True)
class DeviceGroup:
    """``count`` identical emulated devices (their channels differ by distance)."""

    name: str
    """Prefix of the device names: name-0, name-1, ..."""
    count: int = 1
    compute_scale: float = 1.0
    """Emulated compute time = this x the reference time (larger is slower)."""
    memory_fraction: float = 1.0
    """Memory budget between the cheapest block's need (0) and the dearest block's (1); above 1
    holds every block."""
    memory_bytes: float | None = None
    """Absolute memory budget; overrides memory_fraction."""
    distance_m: tuple[float, float] = (50.0, 500.0)
    """Distances to the access point are spread evenly over this range within the group."""
    tx_power_dbm: float = 23.0
    num_cpus: float = 0.0
    """Ray CPUs reserved per device actor; 0 lets any number of devices share a machine."""
    num_gpus: float = 0.0
    """Ray GPUs (fractions allowed) per device actor."""
    ray_memory_bytes: float | None = None
    """Ray memory reservation per device actor."""
    resources: Mapping[str, float] = field(default_factory=dict)
    """Custom Ray resources per device actor (pins devices to node types)."""


@dataclass(frozen=True, kw_only=True)
class ReliabilityConfig:
    """What the coordinator does when devices fail or lag, and how often it checkpoints."""

    on_device_failure: Literal["replan", "restart"] = "replan"
    """replan: drop a failed device from the run and re-plan its blocks among the survivors;
    restart: start a fresh actor for it (same spec and data) and give it its blocks again."""
    straggler_deadline: float | None = None
    """A block whose upload comes later than this multiple of the planned round latency is
    recomputed on another device (empty: wait for every upload)."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many rounds (and after the last round); 0 turns them off."""


@dataclass(frozen=True, kw_only=True)
class FederatedConfig:
    """Settings of the federated schemes (fedavg, ffa-lora)."""

    local_steps: int = 1
    """Local optimizer steps (batches) each device takes per round before uploading its adapter."""


def default_device_groups() -> tuple[DeviceGroup, ...]:
    """A mixed population of 12: 4 workstation-class, 4 Jetson-class and 4 phone-class devices."""
    return (
        DeviceGroup(name="workstation", count=4, compute_scale=1.0, memory_fraction=1.2, distance_m=(50.0, 150.0)),
        DeviceGroup(name="jetson", count=4, compute_scale=2.5, memory_fraction=0.7, distance_m=(100.0, 300.0)),
        DeviceGroup(name="phone", count=4, compute_scale=5.0, memory_fraction=0.35, distance_m=(200.0, 500.0)),
    )


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a run needs; ``deft-ray run`` dumps it resolved as ``config.yaml``."""

    seed: int = 0
    rounds: int = 60
    scheme: str = "jbba"
    """Any scheme of ``deft-ray plan``."""
    clock: Literal["virtual", "realtime"] = "virtual"
    """virtual: emulated time is accounted, nothing sleeps; realtime: the delays really elapse."""
    time_scale: float = 1.0
    """realtime only: wall seconds per emulated second."""
    eval_every: int = 5
    """Evaluate every this many rounds (and after the last)."""
    target_metric: float | None = None
    """Stop once an evaluation's first metric (accuracy, or Pearson for stsb) reaches this value
    (empty: run every round)."""
    round_timeout_s: float = 600.0
    """Longest a round may take before it is declared stuck."""
    profile: str | None = None
    """Block profile file; empty means measure the model's blocks at start-up."""
    storage_path: str = "runs"
    """Folder that receives run directories (<time>-<scheme>) unless --out names one: a shared file
    system path on a cluster, or the head node's local disk (the coordinator runs there)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    reliability: ReliabilityConfig = field(default_factory=ReliabilityConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)
    devices: tuple[DeviceGroup, ...] = field(default_factory=default_device_groups)

    @property
    def num_devices(self) -> int:
        return sum(group.count for group in self.devices)


# ----------------------------------------------------------------------------------- checks
_POSITIVE = {"rounds", "time_scale", "eval_every", "round_timeout_s", "model.lora_rank", "model.lora_alpha",
             "model.max_length", "data.batch_size", "data.dirichlet_alpha", "data.max_train_examples",
             "data.max_eval_examples", "optimizer.lr", "network.bandwidth_hz", "devices.count",
             "devices.compute_scale", "devices.memory_bytes",
             "reliability.straggler_deadline", "federated.local_steps"}
_NON_NEGATIVE = {"optimizer.weight_decay", "model.lora_dropout", "devices.memory_fraction", "devices.num_cpus",
                 "devices.num_gpus", "devices.ray_memory_bytes",
                 "reliability.checkpoint_every"}


def _check_value(path: str, value: Any) -> None:
    key = ".".join(part.split("[")[0] for part in path.split("."))
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if key in _POSITIVE and not value > 0:
        raise InputError(path, value, "must be positive", "give a value above 0")
    if key in _NON_NEGATIVE and value < 0:
        raise InputError(path, value, "must not be negative", "give 0 or more")
    if key == "model.lora_dropout" and value >= 1:
        raise InputError(path, value, "must be below 1", "use e.g. 0.0 or 0.1")


def _validate(config: RunConfig) -> RunConfig:
    from deft_ray.data import task_names
    from deft_ray.planners import scheme_names

    if config.scheme not in scheme_names():
        raise InputError("scheme", config.scheme, "is not a scheme", f"use one of {', '.join(scheme_names())}")
    if config.data.task not in task_names():
        raise InputError("data.task", config.data.task, "is not a task", f"use one of {', '.join(task_names())}")
    if config.data.data_dir is not None and not Path(config.data.data_dir).is_dir():
        raise InputError("data.data_dir", config.data.data_dir, "is not a folder",
                         "give a folder with <task>/train.tsv and <task>/validation.tsv")
    if not config.devices:
        raise InputError("devices", [], "no device groups", "give at least one device group")
    names = [group.name for group in config.devices]
    if len(set(names)) != len(names):
        raise InputError("devices", names, "group names repeat", "give every group its own name")
    for i, group in enumerate(config.devices):
        low, high = group.distance_m
        if not 0 < low <= high:
            raise InputError(f"devices[{i}].distance_m", list(group.distance_m), "needs 0 < low <= high",
                             "give [low, high] in metres")
    deadline = config.reliability.straggler_deadline
    if deadline is not None and deadline < 1:
        raise InputError("reliability.straggler_deadline", deadline, "is below 1, so every device would be late",
                         "give a multiple of the planned latency such as 2, or leave it empty")
    if config.profile is not None and not Path(config.profile).is_file():
        from deft_ray.costs import PACKAGED_PROFILES
        if config.profile not in PACKAGED_PROFILES:
            raise InputError("profile", config.profile, "no such file", "give a profile JSON or leave it empty")
    return config


# ----------------------------------------------------------------------------------- loading
def build_dataclass(cls: type, data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types field by field."""
    if not isinstance(data, Mapping):
        raise InputError(path or "config", data, "must be a mapping", "write it as `key: value` lines")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise InputError(where, data[unknown[0]], "unknown key", f"valid keys here: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        where = f"{path}.{missing[0]}" if path else missing[0]
        raise InputError(where, None, "missing", f"add {missing[0]!r} here")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, path)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, path)
    if origin is Literal:
        if value not in args:
            raise InputError(path, value, "is not a valid choice", f"use one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(path, value, "must be a list", "write it as [a, b, ...]")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise InputError(path, value, f"must have {len(args)} items", f"write it as a list of {len(args)}")
        return tuple(_coerce(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(value, Mapping):
            raise InputError(path, value, "must be a mapping", "write it as {name: amount}")
        return {str(k): _coerce(args[1] if args else float, v, f"{path}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e7 and -5.0e6 (no dot, or no exponent sign) as text
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(path, value, "must be a number", "give a number such as 1e7")
        _check_value(path, value)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(path, value, "must be a whole number", "give an integer")
        _check_value(path, value)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(path, value, "must be true or false", "write true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise InputError(path, value, "must be text", "quote it")
        return value
    raise AssertionError(f"unsupported config type {hint!r} at {path}")


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a (YAML-parsed) mapping."""
    return _validate(build_dataclass(RunConfig, data or {}, ""))


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML config (``None`` gives the defaults) and validate it."""
    if path is None:
        return config_from_dict({})
    file = Path(path)
    if not file.is_file():
        raise InputError("--config", str(path), "no such file", "give the path of a YAML config")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"--config{where}", str(path), f"is not valid YAML ({getattr(error, 'problem', error)})",
                         "fix the YAML syntax there") from None
    return config_from_dict(data or {})


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Set dotted keys (``{"data.task": "sst2", "rounds": 10}``; ``None`` values are skipped) and
    re-validate."""
    data = to_dict(config)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config_from_dict(data)


def to_dict(config: Any) -> Any:
    """Plain YAML-ready data (tuples as lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def dump_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
