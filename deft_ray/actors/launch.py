"""Launching a run's devices and planner, in this process or as Ray actors, and streaming its rounds.

This is where Ray meets the plain classes: ``ray.remote(Device)`` with each device's own
``.options(num_cpus=, num_gpus=, memory=, resources=)`` in the run's placement group,
``ray.remote(Planner)``, and the coordinator as an actor on the driver's node
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator

from deft_ray.actors.device import Device
from deft_ray.actors.placement import gang_schedule
from deft_ray.actors.planner import Planner
from deft_ray.actors.pool import LocalDevicePool, RayDevicePool
from deft_ray.actors.timeouts import DEVICE_STARTUP_TIMEOUT_S, PLAN_TIMEOUT_S, RECORD_TIMEOUT_S
from deft_ray.config import RunConfig
from deft_ray.errors import DeftRayError
from deft_ray.runtime.build import coordinator_for, prepare
from deft_ray.runtime.coordinator import Coordinator
from deft_ray.runtime.ledger import RunDirectory
from deft_ray.runtime.interrupts import StopNow, StopRequest
from deft_ray.runtime.records import Event, EventKind, RoundRecord, RunFinished, RunStarted, RunStreamItem
from deft_ray.runtime.round_kinds import RoundError


def build_local(config: RunConfig, run_dir: RunDirectory, task: Any = None, *, resume: bool = False) -> Coordinator:
    """A coordinator whose devices and planner live in this process (no Ray): tests, debugging.
    ``resume``: continue the run in ``run_dir`` from its latest checkpoint."""
    from deft_ray.learning.model import backbone_state_numpy

    prepared = prepare(config, task, profile_file=str(run_dir.profile_path) if resume else None)
    backbone = backbone_state_numpy(prepared.model)
    spec_of = dict(zip((spec.name for spec in prepared.specs), zip(prepared.specs, prepared.partitions)))

    def make_device(name: str) -> Device:
        spec, indices = spec_of[name]
        return Device(spec, prepared.setup, backbone, prepared.train_columns, indices)

    pool = LocalDevicePool([make_device(spec.name) for spec in prepared.specs], factory=make_device)
    return coordinator_for(config, prepared, pool, Planner(prepared.scheme, seed=config.seed), run_dir, resume=resume)


def build_ray(config: RunConfig, run_dir: RunDirectory, task: Any = None, *, resume: bool = False) -> Coordinator:
    """A coordinator driving one Ray actor per device and a planner actor.

    The frozen backbone and the tokenised training columns are put in the object store once;
    every device maps them zero-copy.
    """
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from deft_ray.learning.model import backbone_state_numpy

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
    placed = Event(kind=EventKind.DEVICES_PLACED, detail=f"{len(set(nodes))} node(s)", nodes=dict(zip(handles, nodes)),
                   startup_s=time.perf_counter() - started)
    prepared = dataclasses.replace(prepared, events=(*prepared.events, placed))
    planner = ray.remote(Planner).options(num_cpus=0).remote(prepared.scheme, seed=config.seed)
    return coordinator_for(config, prepared, RayDevicePool(handles, spawn), RayPlanner(planner), run_dir, resume=resume)


class CoordinatorActor:
    """The coordinator as a Ray actor (a plain class, wrapped with ``ray.remote`` by :func:`ray_stream`).

    It builds its device and planner actors itself, then :meth:`run` streams one
    :class:`~deft_ray.runtime.records.RoundRecord` per round and, last, :class:`RunFinished`.
    """

    def __init__(self, config: RunConfig, run_dir: str, task: Any = None, resume: bool = False):
        self.error: DeftRayError | None = None
        try:
            self.coordinator = build_ray(config, RunDirectory(run_dir), task=task, resume=resume)
        except DeftRayError as error:  # kept, so ready() raises it as a plain task error
            self.error = error

    def ready(self) -> RunStarted:
        if self.error is not None:
            raise self.error
        return RunStarted(self.coordinator.rounds_done)

    def run(self):
        from deft_ray.actors.metrics import RoundMetrics

        metrics = RoundMetrics(self.coordinator.config.scheme)
        for item in _coordinator_stream(self.coordinator):
            if isinstance(item, RoundRecord):
                metrics.observe(item)
            yield item

    def request_stop(self) -> None:
        """Stop after the round in flight (the actor runs two threads, so this arrives during :meth:`run`)."""
        self.coordinator.stop_requested.set()


def _coordinator_stream(coordinator: Coordinator) -> Iterator[RunStreamItem]:
    yield from coordinator.run()
    yield coordinator.interrupted or RunFinished(coordinator.summary)


def local_stream(config: RunConfig, run_dir: RunDirectory, task: Any, resume: bool,
                 stop: StopRequest | None = None) -> Iterator[RunStreamItem]:
    """A run with its devices in this process; ``stop`` (set by a signal) ends it after the round in flight."""
    coordinator = build_local(config, run_dir, task, resume=resume)
    if stop is not None:
        coordinator.stop_requested = stop.event
    yield RunStarted(coordinator.rounds_done)
    yield from _coordinator_stream(coordinator)


#: Seconds between the driver's looks at a signal while it waits for the coordinator actor.
POLL_S = 0.5


def ray_stream(config: RunConfig, run_dir: RunDirectory, task: Any, resume: bool,
               stop: StopRequest | None = None) -> Iterator[RunStreamItem]:
    """Start (or join) Ray, spawn the coordinator actor on this node (so the run directory is
    written where this process runs) and stream its records, each within the round timeout.
    When ``stop`` is set, the coordinator is asked to stop after the round in flight.

    A bare ``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` (as under ``ray job submit``)
    or starts a local one.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
        if stop is not None:
            stop.install()  # ray.init replaced the SIGTERM handler with its own
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    coordinator = ray.remote(CoordinatorActor).options(num_cpus=0, scheduling_strategy=here, max_restarts=0,
                                                       max_concurrency=2)
    actor = None
    try:
        actor = coordinator.remote(config, str(run_dir.root.resolve()), task, resume)
        yield _wait_get(actor.ready.remote(), DEVICE_STARTUP_TIMEOUT_S + 600, actor, stop)
        records = actor.run.remote()
        while True:
            waited_s = 0.0
            _forward_stop(actor, stop)
            while not ray.wait([records], timeout=POLL_S)[0]:
                _forward_stop(actor, stop)
                waited_s += POLL_S
                if waited_s > config.round_timeout_s + PLAN_TIMEOUT_S:
                    raise RoundError(f"no round finished within round_timeout_s = {config.round_timeout_s:.0f} s; "
                                     "raise round_timeout_s or check the devices (`ray status`)")
            try:
                ref = next(records)
            except StopIteration:
                return
            yield ray.get(ref, timeout=RECORD_TIMEOUT_S)
    except ray.exceptions.RayError as error:
        raise unwrap_ray_error(error) from None
    except StopNow:
        if actor is not None:
            ray.kill(actor)
        raise


def _wait_get(ref, timeout_s: float, actor, stop: StopRequest | None):
    """``ray.get(ref)`` within ``timeout_s``, looking at ``stop`` every :data:`POLL_S`."""
    import ray

    waited_s = 0.0
    while not ray.wait([ref], timeout=POLL_S)[0]:
        waited_s += POLL_S
        if waited_s > timeout_s:
            raise RoundError(f"the coordinator did not start within {timeout_s:.0f} s (set DEFT_RAY_STARTUP_TIMEOUT_S)")
    result = ray.get(ref, timeout=RECORD_TIMEOUT_S)
    _forward_stop(actor, stop)
    return result


def _forward_stop(actor, stop: StopRequest | None) -> None:
    if stop is not None and stop.requested and not stop.forwarded:
        actor.request_stop.remote()
        stop.forwarded = True


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
    """The planner actor, as the coordinator's planner."""

    def __init__(self, handle):
        self.handle = handle

    def plan(self, instance, round_idx):
        return self.plan_round(instance, round_idx).plan

    def plan_round(self, instance, round_idx):
        import ray

        try:
            return ray.get(self.handle.plan_round.remote(instance, round_idx), timeout=PLAN_TIMEOUT_S)
        except ray.exceptions.RayTaskError as error:
            cause = unwrap_ray_error(error)
            raise cause if cause is not error else error from None
