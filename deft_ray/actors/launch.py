"""Launching a run's devices and planner, in this process or as Ray actors, and streaming its rounds.

This is where Ray meets the plain classes: ``ray.remote(Device)`` with each device's own
``.options(num_cpus=, num_gpus=, memory=, resources=)`` in the run's placement group,
``ray.remote(Planner)``, and the coordinator as an actor on the driver's node
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Callable, Iterator

from deft_ray.actors.device import Device
from deft_ray.actors.packed import pack
from deft_ray.actors.placement import gang_schedule
from deft_ray.actors.planner import Planner
from deft_ray.actors.pool import LocalDevicePool
from deft_ray.actors.slots import ComputeSlots
from deft_ray.actors.spawning import await_startup, device_actors, device_hosts
from deft_ray.actors.timeouts import CONTROL_TIMEOUT_S, DEVICE_STARTUP_TIMEOUT_S, PLAN_TIMEOUT_S, RECORD_TIMEOUT_S
from deft_ray.config import RunConfig
from deft_ray.errors import DeftRayError
from deft_ray.runtime.build import coordinator_for, prepare
from deft_ray.runtime.coordinator import Coordinator
from deft_ray.runtime.ledger import RunDirectory
from deft_ray.runtime.interrupts import StopNow, StopRequest
from deft_ray.runtime.records import (DevicesStarting, Event, EventKind, RoundRecord, RunFinished, RunStarted,
                                     RunStreamItem)
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


def build_ray(config: RunConfig, run_dir: RunDirectory, task: Any = None, *, resume: bool = False,
              on_progress: Callable[[int, int], None] | None = None) -> Coordinator:
    """A coordinator driving one Ray actor per device (or per host of ``runtime.devices_per_actor``
    packed devices) and a planner actor; ``on_progress(ready, total)`` hears of devices as they
    finish building.

    The frozen backbone and the tokenised training columns are put in the object store once;
    every device maps them zero-copy.
    """
    import ray

    from deft_ray.learning.model import backbone_state_numpy

    prepared = prepare(config, task, profile_file=str(run_dir.profile_path) if resume else None)
    backbone_ref = ray.put(backbone_state_numpy(prepared.model))
    columns_ref = ray.put(prepared.train_columns)
    started = time.perf_counter()
    limit = config.runtime.max_concurrent_devices
    if limit is None and config.clock == "virtual":
        limit = max(1, int(ray.cluster_resources().get("CPU", 1)))
    slots = None if limit is None else ComputeSlots(uuid.uuid4().hex, limit, config.round_timeout_s)
    per_actor = config.runtime.devices_per_actor
    hosts = None if per_actor == 1 else pack(prepared.specs, per_actor)
    group = gang_schedule(prepared.specs, hosts)
    if hosts is None:
        handles, pool = device_actors(Device, prepared, group, backbone_ref, columns_ref, limit, slots)
    else:
        handles, pool = device_hosts(Device, prepared, group, hosts, backbone_ref, columns_ref, limit, slots)
    actors = list({id(handle): handle for handle in handles.values()}.values())
    times = await_startup(actors, len(prepared.specs), on_progress)
    node_of = dict(zip(map(id, actors), ray.get([a.node_id.remote() for a in actors], timeout=DEVICE_STARTUP_TIMEOUT_S)))
    nodes = {name: node_of[id(handle)] for name, handle in handles.items()}
    shares = [t.per_device() for t in times]
    stages = {key: sum(share[key] * t.devices for share, t in zip(shares, times)) / len(handles) for key in shares[0]}
    placed = Event(kind=EventKind.DEVICES_PLACED, detail=f"{len(set(nodes.values()))} node(s), {len(actors)} device "
                   "process(es)", nodes=nodes, startup_s=time.perf_counter() - started, startup_stages_s=stages)
    prepared = dataclasses.replace(prepared, events=(*prepared.events, placed))
    planner = ray.remote(Planner).options(num_cpus=0).remote(prepared.scheme, seed=config.seed)
    return coordinator_for(config, prepared, pool, RayPlanner(planner), run_dir, resume=resume)


class CoordinatorActor:
    """The coordinator as a Ray actor (a plain class, wrapped with ``ray.remote`` by :func:`ray_stream`).

    It builds its device and planner actors itself, then :meth:`run` streams one
    :class:`~deft_ray.runtime.records.RoundRecord` per round and, last, :class:`RunFinished`.
    """

    def __init__(self, config: RunConfig, run_dir: str, task: Any = None, resume: bool = False):
        self.args = (config, run_dir, task, resume)
        self.coordinator: Coordinator | None = None
        self.progress = DevicesStarting(ready=0, total=config.num_devices)
        self._stop_early = False

    def ready(self) -> RunStarted:
        """Build the run (devices, planner, coordinator); its errors reach the driver as task errors."""
        if self.coordinator is None:
            config, run_dir, task, resume = self.args
            self.coordinator = build_ray(config, RunDirectory(run_dir), task=task, resume=resume,
                                         on_progress=self._on_progress)
            if self._stop_early:
                self.coordinator.stop_requested.set()
        return RunStarted(self.coordinator.rounds_done)

    def _on_progress(self, ready: int, total: int) -> None:
        self.progress = DevicesStarting(ready=ready, total=total)

    def startup_progress(self) -> DevicesStarting:
        """How many devices have built their models (answered on the actor's second thread during :meth:`ready`)."""
        return self.progress

    def run(self):
        from deft_ray.actors.metrics import RoundMetrics

        metrics = RoundMetrics(self.coordinator.config.scheme)
        try:
            for item in _coordinator_stream(self.coordinator):
                if isinstance(item, RoundRecord):
                    metrics.observe(item)
                yield item
        finally:
            slots = getattr(self.coordinator.pool, "slots", None)
            if slots is not None:
                slots.remove()  # this node's; a device on another node leaves its empty slot files

    def request_stop(self) -> None:
        """Stop after the round in flight (the actor runs two threads, so this arrives during :meth:`run`)."""
        if self.coordinator is None:
            self._stop_early = True
        else:
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
        yield from _starting(actor, DEVICE_STARTUP_TIMEOUT_S + 600)
        _forward_stop(actor, stop)
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


def _starting(actor, timeout_s: float) -> Iterator[RunStreamItem]:
    """The coordinator actor's :class:`DevicesStarting` as devices get ready, then its :class:`RunStarted`."""
    import ray

    ready_ref = actor.ready.remote()
    waited_s, shown = 0.0, None
    while not ray.wait([ready_ref], timeout=POLL_S)[0]:
        waited_s += POLL_S
        if waited_s > timeout_s:
            raise RoundError(f"the coordinator did not start within {timeout_s:.0f} s (set DEFT_RAY_STARTUP_TIMEOUT_S)")
        progress = ray.get(actor.startup_progress.remote(), timeout=CONTROL_TIMEOUT_S)
        if progress != shown:
            shown = progress
            yield progress
    yield ray.get(ready_ref, timeout=RECORD_TIMEOUT_S)


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
        return self._answer(self.handle.plan_round.remote(instance, round_idx))

    def start_plan(self, instance, round_idx):
        """The planner actor starts planning now, on its lowest-priority thread
        (:meth:`Planner.plan_round_ahead`); the call returned waits for the plan."""
        ref = self.handle.plan_round_ahead.remote(instance, round_idx)
        return lambda: self._answer(ref)

    @staticmethod
    def _answer(ref):
        import ray

        try:
            return ray.get(ref, timeout=PLAN_TIMEOUT_S)
        except ray.exceptions.RayTaskError as error:
            cause = unwrap_ray_error(error)
            raise cause if cause is not error else error from None
