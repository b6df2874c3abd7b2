"""Placing the device actors: one bundle each (or per host of packed devices) in a gang-scheduled Ray placement group."""

from __future__ import annotations

from typing import Mapping, Sequence

from deft_ray.actors.timeouts import PLACEMENT_TIMEOUT_S
from deft_ray.edge.devices import DeviceSpec
from deft_ray.errors import InputError
from deft_ray.runtime.round_kinds import RoundError

#: Ray needs every bundle to reserve something; devices asking for nothing reserve this much CPU.
MIN_BUNDLE_CPU = 0.001


def device_bundle(spec: DeviceSpec) -> dict[str, float]:
    """The resources one device actor reserves in the run's placement group."""
    bundle = {"CPU": max(spec.num_cpus, MIN_BUNDLE_CPU)}
    if spec.num_gpus:
        bundle["GPU"] = spec.num_gpus
    if spec.ray_memory_bytes:
        bundle["memory"] = spec.ray_memory_bytes
    bundle.update(spec.resources)
    return bundle


def host_bundle(specs: Sequence[DeviceSpec]) -> dict[str, float]:
    """The resources a host of packed devices reserves: the sum of its devices' bundles."""
    bundle: dict[str, float] = {}
    for spec in specs:
        for name, amount in device_bundle(spec).items():
            bundle[name] = bundle.get(name, 0.0) + amount
    return bundle


def gang_schedule(specs: tuple[DeviceSpec, ...], hosts: Sequence[Sequence[int]] | None = None):
    """Reserve one bundle per device (or per host of packed devices: ``hosts`` lists each host's
    device indices), all or nothing (a Ray placement group, packed onto as few nodes as fit). A
    run gets all its devices or fails fast, naming what is missing."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    check_cluster_resources(specs, ray.cluster_resources())
    bundles = ([device_bundle(spec) for spec in specs] if hosts is None
               else [host_bundle([specs[i] for i in host]) for host in hosts])
    group = placement_group(bundles, strategy="PACK")
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
