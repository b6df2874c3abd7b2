"""Device pools: the coordinator's devices in this process, or as Ray actors.

Both implement :class:`~deft_ray.runtime.dispatch.DevicePool`: one dispatch of work orders, and
what came back (:class:`~deft_ray.runtime.dispatch.Dispatch`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from deft_ray.actors.dispatch_order import dispatch_order
from deft_ray.actors.slots import ComputeSlots
from deft_ray.actors.timeouts import CONTROL_TIMEOUT_S, DEVICE_STARTUP_TIMEOUT_S
from deft_ray.runtime.dispatch import Arrival, Dispatch
from deft_ray.runtime.round_kinds import RoundError


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
            arrivals.append(Arrival(upload, time.perf_counter() - start))
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

    def memory_usage(self):
        return None  # the devices share this process


class RayDevicePool:
    """Device actors: the adapter is ``ray.put`` once per round, uploads are taken as they arrive.

    A device whose actor died or raised is reported in :attr:`Dispatch.failures`; ``spawn(name)``
    starts a fresh actor for :meth:`restart`. ``max_concurrent`` bounds the device computations
    in flight (``None``: all at once): the orders go out in
    :func:`~deft_ray.actors.dispatch_order.dispatch_order` (the dearest first, or a better split
    over that many cores replayed), and each arrival lets the next one go, so no more than that many devices contend for the
    CPUs. With ``slots`` (:class:`~deft_ray.actors.slots.ComputeSlots`, ``max_concurrent`` of
    them per node), one order more is in flight: its device gets ready while the others compute
    and starts the moment a slot comes free. Emulated time does not change with either (the
    virtual clock charges the profile's compute time).
    """

    def __init__(self, handles: Mapping[str, Any], spawn: Any = None, *, max_concurrent: int | None = None,
                 slots: ComputeSlots | None = None):
        self.handles = dict(handles)
        self.spawn = spawn
        self.max_concurrent = max_concurrent
        self.slots = slots
        self.dispatches = 0
        self.padded_lengths: dict[str, int] = {}
        """Each device's next batch length, from its last upload (:mod:`~deft_ray.actors.dispatch_order`)."""

    def _call(self, name: str, method: str, *args):
        """``handle.method.remote(*args)`` for device ``name`` (a packed pool adds the name)."""
        return getattr(self.handles[name], method).remote(*args)

    def train(self, orders, adapter, *, timeout_s, deadline_s=None):
        import ray

        adapter_ref = ray.put(dict(adapter))
        start = time.perf_counter()
        queue = dispatch_order(orders, self.padded_lengths, self.max_concurrent)
        limit = len(queue) if self.max_concurrent is None else self.max_concurrent + (self.slots is not None)
        pending: dict[Any, str] = {}
        self.dispatches += 1
        turns = ({name: turn for turn, name in enumerate(queue)}  # more orders than slots: keep their order
                 if self.slots is not None and len(queue) > self.slots.count else {})

        def submit() -> None:
            while queue and len(pending) < limit:
                name = queue.pop(0)
                slots = self.slots.for_turn(self.dispatches, turns[name]) if turns else self.slots
                pending[self._call(name, "train", orders[name], adapter_ref, slots)] = name

        submit()
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
            submit()
            try:
                arrivals.append(Arrival(ray.get(ref, timeout=timeout_s), time.perf_counter() - start))
                if arrivals[-1].upload.next_padded_length is not None:
                    self.padded_lengths[name] = arrivals[-1].upload.next_padded_length
            except ray.exceptions.RayActorError as error:
                failures[name] = f"device process died ({type(error).__name__})"
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if isinstance(getattr(error, "cause", None), BaseException) else error
                failures[name] = f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:200]}"
        unfinished = (*pending.values(), *queue)
        return Dispatch(arrivals=tuple(arrivals), failures=failures, unfinished=tuple(sorted(unfinished)))

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
        """Each live device's stream; a device whose process died unnoticed (no work since) is left
        out, and fails in the next round that gives it work."""
        return live_answers({name: self._call(name, "stream_state") for name in self.handles})

    def load_stream_states(self, states):
        import ray

        ray.get([self._call(name, "load_stream_state", dict(state)) for name, state in states.items()
                 if name in self.handles], timeout=CONTROL_TIMEOUT_S)

    def pids(self) -> dict[str, int]:
        """Each live device actor's process id (for fault injection from outside)."""
        return live_answers({name: handle.pid.remote() for name, handle in self.handles.items()})

    def memory_usage(self) -> dict[str, dict[str, float]]:
        """Each live device actor's resident memory (see :meth:`Device.memory_usage`); a device
        whose process died after its last upload, unnoticed by any round, is left out."""
        return live_answers({name: handle.memory_usage.remote() for name, handle in self.handles.items()})


def live_answers(refs: Mapping[str, Any]) -> dict[str, Any]:
    """Each device's answer, leaving out devices whose process has died."""
    import ray

    answers = {}
    for name, ref in refs.items():
        try:
            answers[name] = ray.get(ref, timeout=CONTROL_TIMEOUT_S)
        except ray.exceptions.RayActorError:
            continue
    return answers
