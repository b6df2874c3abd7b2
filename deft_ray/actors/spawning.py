"""Spawning a run's device processes on Ray and waiting for them to build: one actor per device,
or one :class:`~deft_ray.actors.packed.DeviceHost` per group of packed devices, each in its
bundle of the run's placement group (a restart reuses it)."""

from __future__ import annotations

import time

from deft_ray.actors.packed import DeviceHost, PackedDevicePool
from deft_ray.actors.placement import host_bundle
from deft_ray.actors.pool import RayDevicePool
from deft_ray.actors.startup import StartupTimes
from deft_ray.actors.timeouts import DEVICE_STARTUP_TIMEOUT_S
from deft_ray.runtime.round_kinds import RoundError


def device_actors(device_cls, prepared, group, backbone_ref, columns_ref, limit, slots=None):
    """One actor per device, each in its own bundle of the run's placement group (a restart reuses it)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    device_class = ray.remote(device_cls)
    index_of = {spec.name: index for index, spec in enumerate(prepared.specs)}

    def spawn(name: str):
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
    return handles, RayDevicePool(handles, spawn, max_concurrent=limit, slots=slots)


def device_hosts(device_cls, prepared, group, hosts, backbone_ref, columns_ref, limit, slots=None):
    """One :class:`DeviceHost` actor per group of packed devices, in the group's bundle."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    host_class = ray.remote(DeviceHost)
    index_of = {spec.name: index for index, spec in enumerate(prepared.specs)}
    bundle_of = {prepared.specs[i].name: h for h, host in enumerate(hosts) for i in host}

    def spawn_host(names):
        members = [index_of[name] for name in names]
        specs = [prepared.specs[i] for i in members]
        options = dict(num_cpus=sum(s.num_cpus for s in specs), num_gpus=sum(s.num_gpus for s in specs),
                       max_restarts=0, max_concurrency=len(specs) + 1, scheduling_strategy=
                       PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle_of[names[0]]))
        memory = sum(s.ray_memory_bytes or 0 for s in specs)
        if memory:
            options["memory"] = memory
        resources = {k: v for k, v in host_bundle(specs).items() if k not in ("CPU", "GPU", "memory")}
        if resources:
            options["resources"] = resources
        return host_class.options(**options).remote(specs, prepared.setup, backbone_ref, columns_ref,
                                                    [prepared.partitions[i] for i in members], device_class=device_cls)

    handles = {}
    for host in hosts:
        names = [prepared.specs[i].name for i in host]
        handle = spawn_host(names)
        handles.update(dict.fromkeys(names, handle))
    return handles, PackedDevicePool(handles, spawn_host, max_concurrent=limit, slots=slots)


def await_startup(actors, total: int, on_progress) -> list[StartupTimes]:
    """Every device process's start-up times, as each finishes building (a build that failed raises)."""
    import ray

    pending = [actor.startup_times.remote() for actor in actors]
    deadline = time.perf_counter() + DEVICE_STARTUP_TIMEOUT_S
    times: list[StartupTimes] = []
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.perf_counter(), 0.0))
        if not ready:
            raise RoundError(f"{total - sum(t.devices for t in times)} of {total} devices did not start within "
                             f"{DEVICE_STARTUP_TIMEOUT_S:.0f} s (set DEFT_RAY_STARTUP_TIMEOUT_S); check the cluster "
                             "has the CPUs/GPUs/resources the device groups ask for (`ray status`)")
        times.append(ray.get(ready[0], timeout=DEVICE_STARTUP_TIMEOUT_S))
        if on_progress is not None:
            on_progress(sum(t.devices for t in times), total)
    return times
