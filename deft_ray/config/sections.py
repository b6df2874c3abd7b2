"""The sections of a run's config: frozen, typed and validated whenever one is built.

Every section is a frozen, keyword-only pydantic dataclass whose fields carry their help as a
docstring; building one (from YAML, from ``--set``, in Python, or with ``dataclasses.replace``)
validates it, and :func:`~deft_ray.config.loading.validated` turns pydantic's errors into one
:class:`~deft_ray.errors.InputError` naming the field, the value and the fix.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping, Sequence

from pydantic import BeforeValidator, ConfigDict, Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from deft_ray.edge.devices import DeviceSpec
from deft_ray.edge.radio import THERMAL_NOISE_DBM_PER_HZ, dbm_to_w

if TYPE_CHECKING:
    from deft_ray.planners import BlockCost, Scheme

SECTION = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=False)


class FieldProblem(ValueError):
    """A value that a section's own check refuses: ``field`` (relative to the section, ``""`` for
    the section itself), ``value``, what is wrong and the fix."""

    def __init__(self, field: str, value: Any, problem: str, fix: str):
        super().__init__(problem)
        self.field, self.value, self.problem, self.fix = field, value, problem, fix


def _number(value: Any) -> Any:
    """Numbers as YAML gives them: ``1e7`` arrives as text under YAML 1.1; a bool is no number."""
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


Number = Annotated[float, BeforeValidator(_number)]
Positive = Annotated[Number, Field(gt=0)]
NonNegative = Annotated[Number, Field(ge=0)]
Whole = Annotated[int, Strict()]
PositiveWhole = Annotated[int, Strict(), Field(gt=0)]
NonNegativeWhole = Annotated[int, Strict(), Field(ge=0)]


def _auto_or_names(value: Any) -> Any:
    """``target_modules`` is ``auto`` or a list of names; a single other name is a mistake."""
    if isinstance(value, str) and value != "auto":
        raise FieldProblem("", value, "must be auto or a list of module names",
                           f"write auto, or a list such as [{value}]")
    return value


@dataclass(frozen=True, kw_only=True, config=SECTION)
class ModelConfig:
    name_or_path: str = ""
    """Hugging Face model id or folder (a BERT-family classifier or a decoder-only causal LM);
    empty means the packaged all-MiniLM-L6-v2, builtin:tiny-decoder a small random Llama built offline."""
    lora_rank: PositiveWhole = 8
    """LoRA rank r of every adapted module."""
    lora_alpha: Positive = 16.0
    """LoRA scaling numerator: updates are scaled by alpha / r."""
    lora_dropout: Annotated[Number, Field(ge=0, lt=1)] = 0.0
    """LoRA dropout in [0, 1); 0 keeps gradients deterministic, so blocks assemble exactly."""
    target_modules: Annotated[Literal["auto"] | tuple[str, ...], BeforeValidator(_auto_or_names)] = "auto"
    """Module names that get LoRA in every transformer layer; auto takes peft's default for the
    architecture (query/value for BERT and RoBERTa, q_proj/v_proj for Llama, Qwen, Mistral, Gemma
    and OPT, c_attn for GPT-2, query_key_value for GPT-NeoX, qkv_proj for Phi-3)."""
    head_with: Literal["last", "server"] = "last"
    """Which block the classification head travels with: the last layer's, or a server-side block
    (classifiers only: a causal LM's head stays frozen)."""
    max_length: PositiveWhole = 64
    """Tokens per example (padding and truncation); a decoder's prompt and response together."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute dtype of the frozen backbone; LoRA weights, gradients and optimizer state stay float32."""

    @model_validator(mode="after")
    def _targets(self) -> ModelConfig:
        if self.target_modules != "auto" and (not self.target_modules or "auto" in self.target_modules):
            raise FieldProblem("target_modules", list(self.target_modules), "must be auto or module names",
                               "write auto, or a list such as [q_proj, v_proj]")
        return self

    @property
    def path(self) -> str:
        """The model folder or hub id to load."""
        from deft_ray.learning.pretrained import BUILTIN_TINY_DECODER, default_model_path, tiny_decoder_path

        if self.name_or_path == BUILTIN_TINY_DECODER:
            return tiny_decoder_path()
        return self.name_or_path or default_model_path()

    def lora_spec(self, *, model_kind: str = "sequence-classifier"):
        """The :class:`~deft_ray.learning.lora.LoraSpec` of these settings for a model of ``model_kind``."""
        from deft_ray.learning.lora import LoraSpec

        return LoraSpec(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout,
                        target_modules=self.target_modules, head_with=self.head_with, model_kind=model_kind,
                        backbone_dtype=self.dtype)


@dataclass(frozen=True, kw_only=True, config=SECTION)
class DataConfig:
    task: str = "synthetic-sentiment"
    """sst2, rte, mrpc, stsb (GLUE) or synthetic-sentiment (built in) for classifiers; instruction,
    text or synthetic-instructions (built in) for decoder LLMs."""
    data_dir: str | None = None
    """Folder with <task>/train.tsv and <task>/validation.tsv; without it GLUE comes from the hub."""
    train_file: str | None = None
    """instruction and text: training examples as JSON, JSONL, CSV or Parquet (Alpaca
    instruction/input/output, prompt/response, chat messages, or text)."""
    eval_file: str | None = None
    """instruction and text: evaluation examples in the same formats (empty: hold out 5% of the training rows)."""
    dataset: str | None = None
    """instruction and text: a hub dataset name instead of files (its train split, and its validation or test split)."""
    partition: Literal["iid", "dirichlet", "pathological", "shard", "size-skewed", "shared"] = "iid"
    """How training examples are split across devices (Flower Datasets' partitioners): iid; dirichlet label skew; pathological (each device holds classes_per_device classes); shard (label-sorted shards, shards_per_device each); size-skewed (device i gets a share proportional to (i + 1) ** size_exponent); shared (every device draws from the whole training set, as centralised training does)."""
    dirichlet_alpha: Positive = 0.5
    """Concentration of the dirichlet partition (smaller: more skew)."""
    classes_per_device: PositiveWhole = 1
    """pathological: the classes each device holds (float labels count as 5 quantile bins)."""
    shards_per_device: PositiveWhole = 2
    """shard: the label-sorted shards each device gets."""
    size_exponent: NonNegative = 1.0
    """size-skewed: device i (0-based, in config order) gets a share proportional to (i + 1) ** this; 0 is equal sizes."""
    batch_size: PositiveWhole = 16
    """Examples per device per round."""
    max_train_examples: PositiveWhole | None = None
    """Keep a seeded random subset of at most this many training examples (empty: all)."""
    max_eval_examples: PositiveWhole | None = 512
    """Keep a seeded random subset of at most this many validation examples (empty: all)."""
    exact_match_examples: NonNegativeWhole = 128
    """Causal-LM tasks with reference answers: validation prompts answered greedily and scored by
    exact match at every evaluation (0: no generation)."""
    max_new_tokens: PositiveWhole = 32
    """Longest greedy answer, in tokens, generated for exact match."""

    def partition_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~deft_ray.learning.partition.partition_indices` these settings give."""
        return dict(scheme=self.partition, alpha=self.dirichlet_alpha, classes_per_device=self.classes_per_device,
                    shards_per_device=self.shards_per_device, size_exponent=self.size_exponent)

    @model_validator(mode="after")
    def _known(self) -> DataConfig:
        from deft_ray.learning.tasks import get_task, task_names

        if self.task not in task_names():
            raise FieldProblem("task", self.task, "is not a task", f"use one of {', '.join(task_names())}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise FieldProblem("data_dir", self.data_dir, "is not a folder",
                               "give a folder with <task>/train.tsv and <task>/validation.tsv")
        reads_files = self.task in ("instruction", "text")
        for name in ("train_file", "eval_file", "dataset"):
            value = getattr(self, name)
            if value is not None and not reads_files:
                raise FieldProblem(name, value, f"is not read by task {self.task!r}",
                                   "use task instruction or text, or leave it empty")
            if value is not None and name != "dataset" and not Path(value).is_file():
                raise FieldProblem(name, value, "no such file", "give a JSON, JSONL, CSV or Parquet file")
        if reads_files and self.train_file is None and self.dataset is None:
            raise FieldProblem("train_file", None, f"task {self.task!r} needs examples",
                               "set data.train_file (JSON, JSONL, CSV or Parquet) or data.dataset (a hub name)")
        if self.train_file is not None and self.dataset is not None:
            raise FieldProblem("dataset", self.dataset, "is given with data.train_file, and a task reads one source",
                               "give either data.train_file or data.dataset, not both")
        if self.partition in ("dirichlet", "pathological", "shard") and get_task(self.task).kind == "causal-lm":
            raise FieldProblem("partition", self.partition, f"needs class labels, and task {self.task!r} has none",
                               "use partition iid, size-skewed or shared")
        return self


@dataclass(frozen=True, kw_only=True, config=SECTION)
class OptimizerConfig:
    """The server's optimizer (and the federated devices' local one)."""

    name: Literal["adamw", "sgd"] = "adamw"
    """adamw or sgd."""
    lr: Positive = 2e-3
    """Learning rate."""
    weight_decay: NonNegative = 0.0
    """Decoupled (adamw) or L2 (sgd) weight decay."""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """How the learning rate moves over the run's optimizer steps (one per round): constant, or
    linear or cosine decay to 0 at the last round; DEFT schemes only (the federated devices train
    locally at a fixed lr)."""
    warmup_rounds: NonNegativeWhole = 0
    """Rounds over which the learning rate rises linearly from 0 to lr before the schedule."""

    def build(self, parameters: Sequence[Any]):
        """The torch optimizer over ``parameters``."""
        import torch

        optimizer = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[self.name]
        return optimizer(parameters, lr=self.lr, weight_decay=self.weight_decay)

    def build_schedule(self, optimizer: Any, *, total_steps: int):
        """The learning-rate scheduler of ``optimizer`` over ``total_steps`` steps (transformers')."""
        from transformers import get_scheduler

        name = "constant_with_warmup" if self.schedule == "constant" else self.schedule
        return get_scheduler(name, optimizer, num_warmup_steps=self.warmup_rounds, num_training_steps=total_steps)


@dataclass(frozen=True, kw_only=True, config=SECTION)
class NetworkConfig:
    bandwidth_hz: Positive = 1e7
    """Total uplink bandwidth shared by the devices."""
    noise_dbm_per_hz: Number = THERMAL_NOISE_DBM_PER_HZ
    """Noise power spectral density at the access point."""
    rate_model: Literal["shannon", "spectral_efficiency"] = "shannon"
    """shannon: the rate depends on the bandwidth share; spectral_efficiency: fixed bits per Hz per
    device, from its SNR at an equal share (docs/method.md, "Rate models")."""
    rayleigh_fading: Annotated[bool, Strict()] = False
    """Redraw |h|^2 ~ Exp(1) for every device every round."""
    shadowing_db: NonNegative = 0.0
    """Log-normal shadowing: standard deviation in dB of every device's gain (0: none)."""
    shadowing_coherence_s: NonNegative = 0.0
    """Emulated seconds over which shadowing decorrelates: rounds dt apart correlate by
    exp(-dt / this) (Gauss-Markov); 0 redraws it independently every round."""
    channel_trace: str | None = None
    """CSV with columns round,device,channel_gain (linear power gain) that replaces the channel
    model for the devices it lists, from their first listed round; a device's last row holds
    for the rounds after it (empty: no trace)."""
    upload_dtype: Literal["float32", "float16", "bfloat16", "int8"] = "float32"
    """How devices send their gradients (or federated updates): float32, float16, bfloat16, or int8
    with a per-tensor scale and seeded stochastic rounding; the server restores float32, and the
    payloads the planner and the transmission times use shrink to 16, 16 or 8 bits per element."""


@dataclass(frozen=True, kw_only=True, config=SECTION)
class DeviceGroup:
    """``count`` identical emulated devices (their channels differ by distance)."""

    name: str
    """Prefix of the device names: name-0, name-1, ..."""
    count: PositiveWhole = 1
    """Devices in the group."""
    compute_scale: Positive = 1.0
    """Emulated compute time = this x the reference time (larger is slower)."""
    memory_fraction: NonNegative = 1.0
    """Memory budget between the cheapest block's need (0) and the dearest block's (1); above 1
    holds every block."""
    memory_bytes: Positive | None = None
    """Absolute memory budget; overrides memory_fraction."""
    distance_m: tuple[Number, Number] = (50.0, 500.0)
    """Distances to the access point are spread evenly over this range within the group."""
    tx_power_dbm: Number = 23.0
    """Transmit power (23 dBm is 0.2 W)."""
    compute_power_w: NonNegative = 15.0
    """Watts drawn while computing; a round's energy is this x compute seconds + the transmit power x upload seconds."""
    energy_budget_j: Positive | None = None
    """Most joules a round may cost each device of the group, compute plus upload (crunch, jbba and
    exact respect it; empty: no limit)."""
    num_cpus: NonNegative = 0.0
    """Ray CPUs reserved per device actor; 0 lets any number of devices share a machine."""
    num_gpus: NonNegative = 0.0
    """Ray GPUs (fractions allowed) per device actor."""
    ray_memory_bytes: NonNegative | None = None
    """Ray memory reservation per device actor."""
    resources: Mapping[str, NonNegative] = dataclasses.field(default_factory=dict)
    """Custom Ray resources per device actor (pins devices to node types)."""
    speed_mps: NonNegative = 0.0
    """Mobility: each device walks at this speed within distance_m, reflecting at its bounds,
    in a random direction each round (0: static)."""
    mean_online_s: Positive | None = None
    """Availability: mean online sojourn in emulated seconds of a Markov on/off process (with
    mean_offline_s; empty: always online)."""
    mean_offline_s: Positive | None = None
    """Availability: mean offline sojourn in emulated seconds (with mean_online_s)."""

    @model_validator(mode="after")
    def _distances(self) -> DeviceGroup:
        low, high = self.distance_m
        if not 0 < low <= high:
            raise FieldProblem("distance_m", list(self.distance_m), "needs 0 < low <= high", "give [low, high] in metres")
        if (self.mean_online_s is None) != (self.mean_offline_s is None):
            given = "mean_online_s" if self.mean_offline_s is None else "mean_offline_s"
            raise FieldProblem(given, getattr(self, given), "is given without its partner",
                               "give both mean_online_s and mean_offline_s, or neither")
        return self

    def device_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]

    def specs(self, memory_range_bytes: tuple[float, float]) -> list[DeviceSpec]:
        """The group's devices; relative budgets lie in ``memory_range_bytes`` (the cheapest and
        the dearest block's need)."""
        import numpy as np

        low, high = memory_range_bytes
        distances = (np.linspace(*self.distance_m, num=self.count) if self.count > 1
                     else [float(np.mean(self.distance_m))])
        budget = self.memory_bytes if self.memory_bytes is not None else low + self.memory_fraction * (high - low)
        return [DeviceSpec(name=name, compute_scale=self.compute_scale,
                           memory_budget_bytes=float(budget), distance_m=float(distances[i]),
                           tx_power_w=dbm_to_w(self.tx_power_dbm), compute_power_w=self.compute_power_w,
                           energy_budget_j=self.energy_budget_j, num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                           ray_memory_bytes=self.ray_memory_bytes, resources=dict(self.resources),
                           speed_mps=self.speed_mps, distance_range_m=(float(self.distance_m[0]), float(self.distance_m[1])),
                           mean_online_s=self.mean_online_s, mean_offline_s=self.mean_offline_s)
                for i, name in enumerate(self.device_names())]


@dataclass(frozen=True, kw_only=True, config=SECTION)
class ReliabilityConfig:
    """What the coordinator does when devices fail or lag, and how often it checkpoints."""

    on_device_failure: Literal["replan", "restart"] = "replan"
    """replan: drop a failed device from the run and re-plan its blocks among the survivors;
    restart: start a fresh actor for it (same spec and data) and give it its blocks again."""
    straggler_deadline: Positive | None = None
    """A block whose upload comes later than this multiple of the planned round latency is
    recomputed on another device (empty: wait for every upload)."""
    checkpoint_every: NonNegativeWhole = 10
    """Write a checkpoint every this many rounds (and after the last round); 0 turns them off."""
    max_loss_growth: Annotated[Number, Field(gt=1)] | None = 10.0
    """Stop the run as diverged once a round's training loss exceeds this multiple of the first
    round's (empty: never). A loss or gradient that is not finite always stops it."""
    availability_trace: str | None = None
    """JSON file mapping device names to lists of [start_s, end_s] online intervals in emulated
    seconds; it replaces the Markov model for the devices it names (an empty list: never online);
    the others follow their group's mean_online_s/mean_offline_s, or are always online."""

    @model_validator(mode="after")
    def _deadline(self) -> ReliabilityConfig:
        if self.straggler_deadline is not None and self.straggler_deadline < 1:
            raise FieldProblem("straggler_deadline", self.straggler_deadline,
                               "is below 1, so every device would be late",
                               "give a multiple of the planned latency such as 2, or leave it empty")
        return self


@dataclass(frozen=True, kw_only=True, config=SECTION)
class FederatedConfig:
    """Settings of the federated schemes (fedavg, ffa-lora)."""

    local_steps: PositiveWhole = 1
    """Local optimizer steps (batches) each device takes per round before uploading its adapter."""


@dataclass(frozen=True, kw_only=True, config=SECTION)
class RuntimeConfig:
    """How the device processes share the machines they run on (wall time only: emulated time
    and results do not change)."""

    max_concurrent_devices: PositiveWhole | None = None
    """Device computations that run at once, the rest waiting their turn (empty: the Ray
    cluster's CPUs under the virtual clock, which charges profiled compute time, so contention
    only costs wall time; no limit under realtime, where wall time is the emulation). One order
    more is in flight, its device getting ready for the first compute slot to come free
    (docs/architecture.md, "Packed devices and bounded concurrency")."""
    devices_per_actor: PositiveWhole = 1
    """Emulated devices hosted by one Ray actor process, training on threads (1: an actor per
    device). More saves each device the process's imports and memory; the devices of a process
    share its Ray resources and its failures (docs/architecture.md, "Packed devices"). GPU
    devices are not packed: CUDA caps memory per process, not per device."""
    plan_ahead: bool = True
    """Under the virtual clock, solve the next round's plan while this round's devices compute,
    on the CPU time they leave idle; a round that does not end as planned (a failure, a straggler)
    plans afresh, so results do not change (docs/architecture.md, "Planning ahead")."""


def default_device_groups() -> tuple[DeviceGroup, ...]:
    """A mixed population of 12: 4 workstation-class (65 W while computing), 4 Jetson-class (15 W)
    and 4 phone-class (5 W) devices."""
    return (
        DeviceGroup(name="workstation", count=4, compute_scale=1.0, memory_fraction=1.2, distance_m=(50.0, 150.0),
                    compute_power_w=65.0),
        DeviceGroup(name="jetson", count=4, compute_scale=2.5, memory_fraction=0.7, distance_m=(100.0, 300.0),
                    compute_power_w=15.0),
        DeviceGroup(name="phone", count=4, compute_scale=5.0, memory_fraction=0.35, distance_m=(200.0, 500.0),
                    compute_power_w=5.0),
    )


@dataclass(frozen=True, kw_only=True, config=SECTION)
class RunConfig:
    """Everything a run needs; ``deft-ray run`` dumps it resolved as ``config.yaml``."""

    seed: NonNegativeWhole = 0
    """Seeds the model's LoRA and head, the data split and batches, the channel draws and the planner."""
    rounds: PositiveWhole = 60
    """Rounds to run (a round is one optimizer step of the adapter)."""
    scheme: str = "jbba"
    """Any scheme of ``deft-ray plan``."""
    clock: Literal["virtual", "realtime"] = "virtual"
    """virtual: emulated time is accounted, nothing sleeps; realtime: the delays really elapse."""
    time_scale: Positive = 1.0
    """realtime only: wall seconds per emulated second."""
    eval_every: PositiveWhole = 5
    """Evaluate every this many rounds (and after the last)."""
    target_metric: Number | None = None
    """Stop once an evaluation's first metric (accuracy, Pearson for stsb, exact_match for
    synthetic-instructions, eval_loss for instruction/text) reaches this value: at or above it, or
    at or below it for eval_loss and perplexity (empty: run every round)."""
    round_timeout_s: Positive = 600.0
    """Longest a round may take before it is declared stuck."""
    profile: str | None = None
    """Block profile file or packaged profile name; empty means measure the model's blocks at start-up."""
    storage_path: str = "runs"
    """Folder that receives run directories (<time>-<scheme>) unless --out names one: a shared file
    system path on a cluster, or the head node's local disk (the coordinator runs there)."""
    report_to: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = ()
    """Where else the run is logged (config, per-round metrics, plots, adapter): tensorboard (event files in the run directory), mlflow (MLFLOW_TRACKING_URI, else a file store next to the run directory), wandb (WANDB_MODE=offline keeps it local); each needs its extra, e.g. pip install 'deft-ray[mlflow]'."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    reliability: ReliabilityConfig = dataclasses.field(default_factory=ReliabilityConfig)
    federated: FederatedConfig = dataclasses.field(default_factory=FederatedConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    devices: tuple[DeviceGroup, ...] = dataclasses.field(default_factory=default_device_groups)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        from deft_ray.edge.profiles import PACKAGED_PROFILES
        from deft_ray.planners import get_scheme, scheme_names

        if self.scheme not in scheme_names():
            raise FieldProblem("scheme", self.scheme, "is not a scheme", f"use one of {', '.join(scheme_names())}")
        if not self.devices:
            raise FieldProblem("devices", [], "no device groups", "give at least one device group")
        names = [group.name for group in self.devices]
        if len(set(names)) != len(names):
            raise FieldProblem("devices", names, "group names repeat", "give every group its own name")
        if self.optimizer.schedule != "constant" and self.build_scheme().replicates_blocks:
            raise FieldProblem("optimizer.schedule", self.optimizer.schedule,
                               f"applies to the server's steps, and scheme {self.scheme} trains on the devices",
                               "use schedule: constant with a federated scheme")
        if self.optimizer.warmup_rounds >= self.rounds and self.optimizer.warmup_rounds:
            raise FieldProblem("optimizer.warmup_rounds", self.optimizer.warmup_rounds,
                               f"leaves no round after the warm-up (rounds: {self.rounds})",
                               "use fewer warm-up rounds than rounds")
        budgeted = [group.name for group in self.devices if group.energy_budget_j is not None]
        if budgeted and not get_scheme(self.scheme).plans_energy_budgets:
            raise FieldProblem("scheme", self.scheme, f"does not plan with energy budgets (group {budgeted[0]!r} has one)",
                               "use scheme crunch, jbba or exact, or leave energy_budget_j empty")
        if self.profile is not None and self.profile not in PACKAGED_PROFILES and not Path(self.profile).is_file():
            raise FieldProblem("profile", self.profile, "no such file", "give a profile JSON or leave it empty")
        self._check_traces()
        if self.clock == "realtime" and self.runtime.max_concurrent_devices is not None:
            raise FieldProblem("runtime.max_concurrent_devices", self.runtime.max_concurrent_devices,
                               "would hold devices back under the realtime clock, where wall time is the emulation",
                               "leave it empty, or use clock: virtual")
        gpu_groups = [group.name for group in self.devices if group.num_gpus > 0]
        if self.runtime.devices_per_actor > 1 and gpu_groups:
            raise FieldProblem("runtime.devices_per_actor", self.runtime.devices_per_actor,
                               f"would pack GPU devices (group {gpu_groups[0]!r}), whose CUDA memory cap is one per "
                               "process, so no device's own budget would be enforced",
                               "use devices_per_actor: 1 when a device group has num_gpus")
        return self

    def _check_traces(self) -> None:
        """Read the channel and availability traces against the run's device names."""
        from deft_ray.edge.availability import read_availability_trace
        from deft_ray.edge.channel_trace import TraceProblem, read_channel_trace

        names = {name for group in self.devices for name in group.device_names()}
        for field, path, read in (("network.channel_trace", self.network.channel_trace, read_channel_trace),
                                  ("reliability.availability_trace", self.reliability.availability_trace,
                                   read_availability_trace)):
            if path is not None:
                try:
                    read(path, names)
                except TraceProblem as problem:
                    raise FieldProblem(field, path, str(problem), problem.fix) from None

    @property
    def num_devices(self) -> int:
        return sum(group.count for group in self.devices)

    def device_specs(self, profile: Sequence[BlockCost]) -> tuple[DeviceSpec, ...]:
        """Every group's devices; relative budgets lie between the cheapest and dearest block."""
        memory = [block.memory_bytes for block in profile]
        return tuple(spec for group in self.devices for spec in group.specs((min(memory), max(memory))))

    def build_scheme(self) -> Scheme:
        """The run's planning scheme, with the federated schemes' local steps."""
        from deft_ray.planners import get_scheme

        scheme = get_scheme(self.scheme)
        if scheme.replicates_blocks:
            scheme = get_scheme(self.scheme, local_steps=self.federated.local_steps)
        return scheme
