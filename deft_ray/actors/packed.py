"""Packed devices: several emulated devices in one actor process (``runtime.devices_per_actor``).

A :class:`DeviceHost` holds N :class:`~deft_ray.actors.device.Device` objects, each with its own
spec, data stream, model around the one shared backbone, clock and ledger entry; Ray runs its
calls on threads (``max_concurrency``), and torch releases the GIL while it computes, so the
devices train at once. The process's imports and memory are paid once for its N devices. What
packing gives up: the Ray resources a device asks for are reserved per host (the sum of its
devices'), and a host's failure fails all its devices; :class:`PackedDevicePool` reports each of
them as failed, so the recovery re-plans (or restarts) them as it would single devices.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from deft_ray.actors.collector import start_up_collection
from deft_ray.actors.device import Device
from deft_ray.actors.metrics import in_ray_worker
from deft_ray.actors.pool import RayDevicePool, live_answers
from deft_ray.actors.slots import ComputeSlots
from deft_ray.actors.startup import StartupTimes, StartupWatch
from deft_ray.actors.timeouts import CONTROL_TIMEOUT_S, DEVICE_STARTUP_TIMEOUT_S
from deft_ray.edge.devices import DeviceSpec
from deft_ray.runtime.device_setup import DeviceSetup


class DeviceHost:
    """N emulated devices in one process. Plain class: tests drive it without Ray."""

    def __init__(self, specs: Sequence[DeviceSpec], setup: DeviceSetup, backbone: Mapping[str, np.ndarray],
                 train_columns: Mapping[str, np.ndarray], partitions: Sequence[np.ndarray],
                 device_class: Callable[..., Device] = Device):
        self.watch = StartupWatch()
        self._args = (setup, backbone, train_columns)
        self._device_class = device_class
        self._members = {spec.name: (spec, indices) for spec, indices in zip(specs, partitions)}
        with start_up_collection() if in_ray_worker() else nullcontext():  # the host's start-up
            self.devices = {name: self._build(name) for name in self._members}

    def _build(self, name: str) -> Device:
        spec, indices = self._members[name]
        setup, backbone, columns = self._args
        return self._device_class(spec, setup, backbone, columns, indices, watch=self.watch)

    def names(self) -> list[str]:
        return list(self.devices)

    def train(self, name: str, order, adapter, slots=None):
        return self.devices[name].train(order, adapter, slots)

    def stream_state(self, name: str) -> dict[str, Any]:
        return self.devices[name].stream_state()

    def load_stream_state(self, name: str, state: dict[str, Any]) -> None:
        self.devices[name].load_stream_state(state)

    def restart_device(self, name: str) -> None:
        """Build device ``name`` afresh (same spec and data), as a restarted actor would be."""
        self.devices[name] = self._build(name)

    def drop(self, name: str) -> None:
        self.devices.pop(name, None)

    def startup_times(self) -> StartupTimes:
        return self.watch.times(devices=len(self._members))

    def pid(self) -> int:
        return Device.pid(self)  # type: ignore[arg-type]

    def node_id(self) -> str | None:
        return Device.node_id(self)  # type: ignore[arg-type]

    def memory_usage(self) -> dict[str, float]:
        """The process's resident memory (see :meth:`Device.memory_usage`)."""
        return Device.memory_usage(self)  # type: ignore[arg-type]


class PackedDevicePool(RayDevicePool):
    """Devices on :class:`DeviceHost` actors: ``handles[name]`` is the host of device ``name``.

    ``spawn_host(names)`` starts a host for those devices. A device that raised is rebuilt inside
    its host on :meth:`restart`; when the host itself died, the first restart starts a fresh host
    for all its devices still in the run, and the others' restarts find themselves already fresh.
    """

    def __init__(self, handles: Mapping[str, Any], spawn_host: Callable[[Sequence[str]], Any], *,
                 max_concurrent: int | None = None, slots: ComputeSlots | None = None):
        super().__init__(handles, None, max_concurrent=max_concurrent, slots=slots)
        self.spawn_host = spawn_host
        self._fresh: set[str] = set()

    def _call(self, name, method, *args):
        return getattr(self.handles[name], method).remote(name, *args)

    def _members(self, handle) -> list[str]:
        return [name for name, other in self.handles.items() if other is handle]

    def remove(self, name):
        import ray

        handle = self.handles.pop(name)
        self._fresh.discard(name)
        if not self._members(handle):
            ray.kill(handle, no_restart=True)
        else:
            handle.drop.remote(name)

    def restart(self, name):
        import ray

        if name in self._fresh:
            self._fresh.discard(name)
            return
        handle = self.handles[name]
        try:
            ray.get(handle.restart_device.remote(name), timeout=DEVICE_STARTUP_TIMEOUT_S)
            return
        except ray.exceptions.RayActorError:
            pass  # the host is gone: a fresh one for all its devices
        members = self._members(handle)
        fresh = self.spawn_host(members)
        ray.get(fresh.names.remote(), timeout=DEVICE_STARTUP_TIMEOUT_S)  # surfaces a host that fails to build
        for member in members:
            self.handles[member] = fresh
        self._fresh.update(set(members) - {name})

    def hosts(self) -> list[Any]:
        """Each live host once."""
        unique = {id(handle): handle for handle in self.handles.values()}
        return list(unique.values())

    def pids(self) -> dict[str, int]:
        hosts = {str(id(host)): host for host in self.hosts()}
        pid_of = live_answers({key: host.pid.remote() for key, host in hosts.items()})  # live hosts only
        return {name: pid_of[str(id(handle))] for name, handle in self.handles.items() if str(id(handle)) in pid_of}

    def memory_usage(self) -> dict[str, dict[str, float]]:
        """Each live device's share of its host's resident memory (the host's divided by its devices)."""
        import ray

        usage = {}
        for handle in self.hosts():
            members = self._members(handle)
            try:
                host = ray.get(handle.memory_usage.remote(), timeout=CONTROL_TIMEOUT_S)
            except ray.exceptions.RayActorError:
                continue
            usage.update({name: {key: value / len(members) for key, value in host.items()} for name in members})
        return usage


def pack(specs: Sequence[DeviceSpec], per_actor: int) -> list[list[int]]:
    """Indices of ``specs`` grouped into hosts of at most ``per_actor`` consecutive devices; a host
    holds only devices asking for the same GPUs and custom Ray resources, so its bundle (the sum
    of theirs) still fits the nodes they were meant for."""
    groups: list[list[int]] = []
    for index, spec in enumerate(specs):
        last = groups[-1] if groups else None
        if (last is not None and len(last) < per_actor and specs[last[0]].num_gpus == spec.num_gpus
                and dict(specs[last[0]].resources) == dict(spec.resources)):
            last.append(index)
        else:
            groups.append([index])
    return groups
