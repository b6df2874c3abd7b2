"""Build a run from its config: data, model, profile, device population, and the actors.

This is where Ray meets the plain classes: ``ray.remote(Device)`` with each device's own
``.options(num_cpus=, num_gpus=, memory=, resources=)``, and ``ray.remote(Planner)``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from deft_ray.actors.coordinator import Coordinator, RoundError
from deft_ray.actors.validation import ValidationSet
from deft_ray.actors.device import Device, DeviceSetup
from deft_ray.actors.planner import Planner
from deft_ray.actors.pool import Dispatch, LocalDevicePool
from deft_ray.channel import dbm_to_w
from deft_ray.config import RunConfig
from deft_ray.errors import DeftRayError, InputError
from deft_ray.ledger import RunDirectory
from deft_ray.planners import BlockCost
from deft_ray.planners.problem import make_blocks_monotone
from deft_ray.records import DeviceSpec
from deft_ray.transport import Clock

#: Seconds to wait for device actors to build their models, overridable by the environment.
DEVICE_STARTUP_TIMEOUT_S = float(os.environ.get("DEFT_RAY_STARTUP_TIMEOUT_S", "600"))
#: Seconds to wait for one plan.
PLAN_TIMEOUT_S = float(os.environ.get("DEFT_RAY_PLAN_TIMEOUT_S", "120"))


@dataclass(frozen=True)
class Prepared:
    """Everything a run builds before any device exists."""

    model: Any
    model_path: str
    setup: DeviceSetup
    profile: tuple[BlockCost, ...]
    specs: tuple[DeviceSpec, ...]
    train_columns: Mapping[str, np.ndarray]
    partitions: tuple[np.ndarray, ...]
    evaluation: ValidationSet
    events: tuple[Mapping[str, Any], ...]


def device_specs(config: RunConfig, profile: tuple[BlockCost, ...]) -> tuple[DeviceSpec, ...]:
    """Expand the device groups into devices; budgets between the cheapest and dearest block."""
    memory = [block.memory_bytes for block in profile]
    low, high = min(memory), max(memory)
    specs = []
    for group in config.devices:
        distances = np.linspace(*group.distance_m, num=group.count) if group.count > 1 else [np.mean(group.distance_m)]
        budget = group.memory_bytes if group.memory_bytes is not None else low + group.memory_fraction * (high - low)
        for i in range(group.count):
            specs.append(DeviceSpec(name=f"{group.name}-{i}", compute_scale=group.compute_scale,
                                    memory_budget_bytes=float(budget), distance_m=float(distances[i]),
                                    tx_power_w=dbm_to_w(group.tx_power_dbm), num_cpus=group.num_cpus,
                                    num_gpus=group.num_gpus, ray_memory_bytes=group.ray_memory_bytes,
                                    resources=dict(group.resources)))
    return tuple(specs)


def prepare(config: RunConfig, task: Any = None, *, profile_file: str | None = None) -> Prepared:
    """Load (unless given) and tokenise the task, split it across devices, load the model and its
    block profile (from ``profile_file`` when given: a resumed run plans with the profile it began with)."""
    import datasets
    import torch
    from transformers import AutoTokenizer

    from deft_ray.costs import load_profile
    from deft_ray.data import partition_indices, tokenize
    from deft_ray.model import BlockModel, LoraSpec, default_model_path, profile_blocks

    datasets.disable_progress_bars()
    model_path = config.model.name_or_path or default_model_path()
    task = task or load_config_task(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as error:
        raise InputError("model.name_or_path", model_path, f"cannot be loaded ({str(error).splitlines()[0]})",
                         "give a local model folder or a hub id reachable from here") from None
    task = tokenize(task, tokenizer, max_length=config.model.max_length)
    lora = LoraSpec(rank=config.model.lora_rank, alpha=config.model.lora_alpha, dropout=config.model.lora_dropout,
                    target_modules=config.model.target_modules, head_with=config.model.head_with)
    model = BlockModel.from_pretrained(model_path, num_labels=task.spec.num_labels, lora=lora, seed=config.seed)
    train_columns = {k: np.ascontiguousarray(v) for k, v in task.train.with_format("numpy")[:].items()}
    validation = {k: np.ascontiguousarray(v) for k, v in task.validation.with_format("numpy")[:].items()}

    events = []
    if profile_file or config.profile:
        profile = load_profile(profile_file or config.profile)
        if len(profile) != model.num_blocks:
            raise InputError("profile", config.profile, f"has {len(profile)} blocks but the model has "
                             f"{model.num_blocks}", "measure a profile of this model or leave profile empty")
        if profile_file:
            events.append({"kind": "profile_loaded", "detail": profile_file})
    else:
        rows = np.arange(min(config.data.batch_size, len(train_columns["labels"])))
        batch = {k: torch.from_numpy(v[rows]) for k, v in train_columns.items()}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a device computes: one thread each
        try:
            measured = profile_blocks(model, batch, repeats=3, warmup=1)
        finally:
            torch.set_num_threads(threads)
        profile = tuple(BlockCost(**row) for row in measured)
        events.append({"kind": "profile_measured", "detail": f"{len(profile)} blocks, block 0 "
                       f"{profile[0].compute_s:.3f} s, last {profile[-1].compute_s:.3f} s"})
    profile, notes = make_blocks_monotone(profile)
    events.extend({"kind": "profile_smoothed", "detail": note} for note in notes)

    specs = device_specs(config, profile)
    partitions = partition_indices(train_columns["labels"], len(specs), scheme=config.data.partition,
                                   alpha=config.data.dirichlet_alpha, seed=config.seed)
    setup = DeviceSetup(model_path=model_path, num_labels=task.spec.num_labels, lora=lora, seed=config.seed,
                        batch_size=config.data.batch_size, clock=Clock(config.clock, config.time_scale),
                        block_memory_bytes=tuple(b.memory_bytes for b in profile), optimizer=config.optimizer.name,
                        lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay)
    return Prepared(model=model, model_path=model_path, setup=setup, profile=profile, specs=specs,
                    train_columns=train_columns, partitions=tuple(partitions),
                    evaluation=ValidationSet(spec=task.spec, columns=validation), events=tuple(events))


def load_config_task(config: RunConfig):
    """The run's task data, every row checked (bad rows raise :class:`InputError`)."""
    from deft_ray.data import load_task

    return load_task(config.data.task, data_dir=config.data.data_dir, seed=config.seed,
                     max_train_examples=config.data.max_train_examples,
                     max_eval_examples=config.data.max_eval_examples)


def build_local(config: RunConfig, run_dir: RunDirectory, task: Any = None, *, resume: bool = False) -> Coordinator:
    """A coordinator whose devices and planner live in this process (no Ray): tests, debugging.
    ``resume``: continue the run in ``run_dir`` from its latest checkpoint."""
    from deft_ray.model import backbone_state_numpy

    prepared = prepare(config, task, profile_file=str(run_dir.profile_path) if resume else None)
    backbone = backbone_state_numpy(prepared.model)
    spec_of = dict(zip((spec.name for spec in prepared.specs), zip(prepared.specs, prepared.partitions)))

    def make_device(name: str) -> Device:
        spec, indices = spec_of[name]
        return Device(spec, prepared.setup, backbone, prepared.train_columns, indices)

    pool = LocalDevicePool([make_device(spec.name) for spec in prepared.specs], factory=make_device)
    return _coordinator(config, prepared, pool, Planner(config.scheme, seed=config.seed, options=scheme_options(config)),
                        run_dir, resume=resume)


def scheme_options(config: RunConfig) -> dict[str, Any]:
    """Constructor options of the configured scheme (the federated schemes' local steps)."""
    from deft_ray.planners import get_scheme

    return {"local_steps": config.federated.local_steps} if get_scheme(config.scheme).replicates_blocks else {}


def build_ray(config: RunConfig, run_dir: RunDirectory, task: Any = None, *, resume: bool = False) -> Coordinator:
    """A coordinator driving one Ray actor per device and a planner actor.

    The frozen backbone and the tokenised training columns are put in the object store once;
    every device maps them zero-copy.
    """
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from deft_ray.model import backbone_state_numpy

    prepared = prepare(config, task, profile_file=str(run_dir.profile_path) if resume else None)
    backbone_ref = ray.put(backbone_state_numpy(prepared.model))
    columns_ref = ray.put(prepared.train_columns)
    started = time.perf_counter()
    group = gang_schedule(prepared.specs)
    device_class = ray.remote(Device)
    index_of = {spec.name: index for index, spec in enumerate(prepared.specs)}

    def spawn(name: str):
        """A device actor in its own bundle of the run's placement group (a restart reuses it)."""
        index = index_of[name]
        spec = prepared.specs[index]
        options = dict(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, max_restarts=0,
                       scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index))
        if spec.ray_memory_bytes:
            options["memory"] = spec.ray_memory_bytes
        if spec.resources:
            options["resources"] = dict(spec.resources)
        return device_class.options(**options).remote(spec, prepared.setup, backbone_ref, columns_ref,
                                                      prepared.partitions[index])

    handles = {spec.name: spawn(spec.name) for spec in prepared.specs}
    names = {handle.name.remote(): name for name, handle in handles.items()}
    ready, pending = ray.wait(list(names), num_returns=len(names), timeout=DEVICE_STARTUP_TIMEOUT_S)
    if pending:
        raise RoundError(f"{len(pending)} of {len(names)} device actors did not start within "
                         f"{DEVICE_STARTUP_TIMEOUT_S:.0f} s (set DEFT_RAY_STARTUP_TIMEOUT_S); check the cluster has "
                         "the CPUs/GPUs/resources the device groups ask for (`ray status`)")
    ray.get(ready, timeout=DEVICE_STARTUP_TIMEOUT_S)  # surfaces a device that failed to build
    nodes = ray.get([handle.node_id.remote() for handle in handles.values()], timeout=DEVICE_STARTUP_TIMEOUT_S)
    placed = {"kind": "devices_placed", "detail": f"{len(set(nodes))} node(s)", "nodes": dict(zip(handles, nodes)),
              "startup_s": time.perf_counter() - started}
    prepared = dataclasses.replace(prepared, events=(*prepared.events, placed))
    planner = ray.remote(Planner).options(num_cpus=0).remote(config.scheme, seed=config.seed,
                                                             options=scheme_options(config))
    return _coordinator(config, prepared, RayDevicePool(handles, spawn), RayPlanner(planner), run_dir, resume=resume)


class CoordinatorActor:
    """The coordinator as a Ray actor (a plain class, wrapped with ``ray.remote`` by the runner).

    It builds its device and planner actors itself, then :meth:`run` streams one
    :class:`~deft_ray.records.RoundRecord` per round and, last, the run's summary.
    """

    def __init__(self, config: RunConfig, run_dir: str, task: Any = None, resume: bool = False):
        self.error: DeftRayError | None = None
        try:
            self.coordinator = build_ray(config, RunDirectory(run_dir), task=task, resume=resume)
        except DeftRayError as error:  # kept, so ready() raises it as a plain task error
            self.error = error

    def ready(self) -> int:
        """The last round already done (0, or a resumed run's checkpoint round)."""
        if self.error is not None:
            raise self.error
        return self.coordinator.next_round - 1

    def run(self):
        yield from self.coordinator.run()
        yield self.coordinator.summary


#: Ray needs every bundle to reserve something; devices asking for nothing reserve this much CPU.
MIN_BUNDLE_CPU = 0.001
#: Seconds to wait for the devices' placement group, overridable by the environment.
PLACEMENT_TIMEOUT_S = float(os.environ.get("DEFT_RAY_PLACEMENT_TIMEOUT_S", "60"))


def device_bundle(spec: DeviceSpec) -> dict[str, float]:
    """The resources one device actor reserves in the run's placement group."""
    bundle = {"CPU": max(spec.num_cpus, MIN_BUNDLE_CPU)}
    if spec.num_gpus:
        bundle["GPU"] = spec.num_gpus
    if spec.ray_memory_bytes:
        bundle["memory"] = spec.ray_memory_bytes
    bundle.update(spec.resources)
    return bundle


def gang_schedule(specs: tuple[DeviceSpec, ...]):
    """Reserve one bundle per device, all or nothing (a Ray placement group, packed onto as few
    nodes as fit). A run gets all its devices or fails fast, naming what is missing."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    check_cluster_resources(specs, ray.cluster_resources())
    group = placement_group([device_bundle(spec) for spec in specs], strategy="PACK")
    ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
    if not ready:
        remove_placement_group(group)
        nodes = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(node["Resources"].items())
                                    if not k.startswith(("node:", "object_store", "memory")))
                          for node in ray.nodes() if node["Alive"])
        raise RoundError(f"the {len(specs)} device actors could not all be placed within {PLACEMENT_TIMEOUT_S:.0f} s: "
                         f"no packing of their bundles fits the nodes (nodes: {nodes}); give each device group "
                         "resources a single node can hold, or add nodes (DEFT_RAY_PLACEMENT_TIMEOUT_S sets the wait)")
    return group


def check_cluster_resources(specs, available: Mapping[str, float]) -> None:
    """Fail fast, naming what is missing, when the devices ask for more than the cluster has."""
    wanted: dict[str, float] = {}
    for spec in specs:
        for name, amount in (("CPU", spec.num_cpus), ("GPU", spec.num_gpus), *spec.resources.items()):
            wanted[name] = wanted.get(name, 0.0) + (max(amount, MIN_BUNDLE_CPU) if name == "CPU" else amount)
    short = {name: (amount, available.get(name, 0.0)) for name, amount in wanted.items()
             if amount > available.get(name, 0.0) + 1e-9}
    if short:
        detail = "; ".join(f"{name}: devices ask for {need:g}, cluster has {have:g}" for name, (need, have) in short.items())
        raise InputError("devices", f"{len(specs)} devices", f"need more resources than the cluster has ({detail})",
                         "lower the device groups' num_cpus/num_gpus/resources or add nodes")


def _coordinator(config, prepared: Prepared, pool, planner, run_dir: RunDirectory, *, resume: bool) -> Coordinator:
    run_dir.create(config, resume=resume)
    if not resume:
        run_dir.write_profile(prepared.profile, source=config.profile or "measured at start-up, one thread, made monotone")
    server_stream = None
    if prepared.model.head_block is not None:
        from deft_ray.actors.device import TensorTable
        from deft_ray.data import BatchStream

        server_stream = BatchStream(TensorTable(prepared.train_columns), np.arange(len(prepared.train_columns["labels"])),
                                    batch_size=config.data.batch_size, seed=config.seed)
    coordinator = Coordinator(config=config, model=prepared.model, profile=prepared.profile, specs=prepared.specs,
                              pool=pool, planner=planner, evaluation=prepared.evaluation, run_dir=run_dir,
                              events=prepared.events, server_stream=server_stream)
    if resume:
        from deft_ray.checkpoint import load_resumable

        path, checkpoint = load_resumable(run_dir, config)
        coordinator.restore(checkpoint, path)
    return coordinator


class RayDevicePool:
    """Device actors: the adapter is ``ray.put`` once per round, uploads are taken as they arrive.

    A device whose actor died or raised is reported in :attr:`Dispatch.failures`; ``spawn(name)``
    starts a fresh actor for :meth:`restart`.
    """

    def __init__(self, handles: Mapping[str, Any], spawn: Any = None):
        self.handles = dict(handles)
        self.spawn = spawn

    def train(self, orders, adapter, *, timeout_s, deadline_s=None):
        import ray

        adapter_ref = ray.put(dict(adapter))
        start = time.perf_counter()
        pending = {self.handles[name].train.remote(order, adapter_ref): name for name, order in orders.items()}
        arrivals, failures = [], {}
        while pending:
            elapsed = time.perf_counter() - start
            if deadline_s is not None and elapsed >= deadline_s:
                break  # the rest are stragglers; their late results are dropped when they come
            wait_s = timeout_s - elapsed if deadline_s is None else min(timeout_s, deadline_s) - elapsed
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(wait_s, 0.0))
            if not ready:
                if deadline_s is not None and deadline_s < timeout_s:
                    break
                raise RoundError(f"devices {sorted(pending.values())} sent nothing within round_timeout_s = "
                                 f"{timeout_s:.0f} s; raise round_timeout_s or check those devices")
            ref = ready[0]
            name = pending.pop(ref)
            try:
                arrivals.append((ray.get(ref, timeout=timeout_s), time.perf_counter() - start))
            except ray.exceptions.RayActorError as error:
                failures[name] = f"device process died ({type(error).__name__})"
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if isinstance(getattr(error, "cause", None), BaseException) else error
                failures[name] = f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:200]}"
        return Dispatch(arrivals=tuple(arrivals), failures=failures, unfinished=tuple(sorted(pending.values())))

    def remove(self, name):
        import ray

        ray.kill(self.handles.pop(name), no_restart=True)

    def restart(self, name):
        import ray

        if self.spawn is None:
            raise RuntimeError("this pool cannot start devices")
        try:
            ray.kill(self.handles[name], no_restart=True)
        except ray.exceptions.RayError:
            pass
        handle = self.spawn(name)
        ray.get(handle.name.remote(), timeout=DEVICE_STARTUP_TIMEOUT_S)  # surfaces a device that fails to build
        self.handles[name] = handle

    def stream_states(self):
        import ray

        names = list(self.handles)
        return dict(zip(names, ray.get([self.handles[n].stream_state.remote() for n in names], timeout=PLAN_TIMEOUT_S)))

    def load_stream_states(self, states):
        import ray

        ray.get([self.handles[name].load_stream_state.remote(dict(state)) for name, state in states.items()
                 if name in self.handles], timeout=PLAN_TIMEOUT_S)

    def pids(self) -> dict[str, int]:
        """Each device actor's process id (for fault injection from outside)."""
        import ray

        names = list(self.handles)
        return dict(zip(names, ray.get([self.handles[n].pid.remote() for n in names], timeout=PLAN_TIMEOUT_S)))

    def memory_usage(self) -> dict[str, dict[str, float]]:
        """Each device actor's resident memory (see :meth:`Device.memory_usage`)."""
        import ray

        names = list(self.handles)
        usage = ray.get([self.handles[name].memory_usage.remote() for name in names], timeout=PLAN_TIMEOUT_S)
        return dict(zip(names, usage))


def unwrap_ray_error(error: BaseException) -> BaseException:
    """The deft-ray error behind Ray's wrappers (a task error, an actor that died in its
    constructor), so the user sees its one-line message; else the Ray error itself."""
    import ray

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DeftRayError) and not isinstance(seen, ray.exceptions.RayError):
            return seen
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return error


class RayPlanner:
    def __init__(self, handle):
        self.handle = handle

    def plan(self, instance, round_idx):
        import ray

        try:
            return ray.get(self.handle.plan.remote(instance, round_idx), timeout=PLAN_TIMEOUT_S)
        except ray.exceptions.RayTaskError as error:
            cause = unwrap_ray_error(error)
            raise cause if cause is not error else error from None
