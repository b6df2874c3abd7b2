"""Device pools: how the coordinator reaches its devices, in this process or as Ray actors.

A pool runs one dispatch of work orders and reports what came back (:class:`Dispatch`): the
uploads with their arrival times, the devices that failed (their process died, or they raised),
and the devices still computing when the straggler deadline passed. It can also drop a failed
device, start a fresh one in its place, and save and restore the devices' batch streams for
checkpoints. The Ray pool lives in :mod:`deft_ray.actors.launch`, beside the other Ray code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from deft_ray.records import BlockUpload, WorkOrder


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What came back from one dispatch of work orders."""

    arrivals: tuple[tuple[BlockUpload, float], ...]
    """Each upload with the wall seconds from dispatch to its arrival."""
    failures: Mapping[str, str] = field(default_factory=dict)
    """Device -> what went wrong (its process died, or the exception it raised)."""
    unfinished: tuple[str, ...] = ()
    """Devices whose upload had not arrived when the wall-clock deadline passed."""


class DevicePool(Protocol):
    """The devices of a run, as the coordinator sees them."""

    def train(self, orders: Mapping[str, WorkOrder], adapter: Mapping[str, np.ndarray], *,
              timeout_s: float, deadline_s: float | None = None) -> Dispatch:
        """Run the orders (``adapter`` is published once for all devices) and collect the uploads,
        giving up on devices still busy ``deadline_s`` wall seconds after dispatch."""

    def remove(self, name: str) -> None:
        """Stop a device and forget it."""

    def restart(self, name: str) -> None:
        """Replace a failed device by a fresh one with the same spec and data."""

    def stream_states(self) -> dict[str, dict[str, Any]]:
        """Each device's batch-stream state."""

    def load_stream_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore batch-stream states saved by :meth:`stream_states`."""


class LocalDevicePool:
    """Devices in this process, run one after the other (tests and debugging).

    ``factory(name)`` builds a device afresh for :meth:`restart`. A device that raises has failed,
    as a device actor that raises does under Ray.
    """

    def __init__(self, devices: Sequence[Any], factory: Callable[[str], Any] | None = None):
        self.devices = {device.spec.name: device for device in devices}
        self.factory = factory

    def train(self, orders, adapter, *, timeout_s, deadline_s=None):
        arrivals, failures = [], {}
        start = time.perf_counter()
        for name, order in orders.items():
            try:
                upload = self.devices[name].train(order, adapter)
            except Exception as error:  # noqa: BLE001 - a failing device is reported, not fatal
                failures[name] = f"{type(error).__name__}: {error}"
                continue
            arrivals.append((upload, time.perf_counter() - start))
        return Dispatch(arrivals=tuple(arrivals), failures=failures)

    def remove(self, name):
        del self.devices[name]

    def restart(self, name):
        if self.factory is None:
            raise RuntimeError("this pool has no device factory to restart devices with")
        self.devices[name] = self.factory(name)

    def stream_states(self):
        return {name: device.stream_state() for name, device in self.devices.items()}

    def load_stream_states(self, states):
        for name, state in states.items():
            if name in self.devices:
                self.devices[name].load_stream_state(dict(state))
