"""Compute slots: at most N device computations at once on a node, held as file locks that a
device's death releases.

Under the virtual clock the pool keeps one order more in flight than there are slots
(:class:`~deft_ray.actors.pool.RayDevicePool`). That device receives its order, loads the adapter
and draws its batch while the others compute, then waits here for the first slot to come free,
so a core passes from one device to the next without a round trip through the coordinator
(docs/architecture.md, "Packed devices and bounded concurrency").
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import queue
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from deft_ray.errors import DeftRayError


class ComputeSlotTimeout(DeftRayError):
    """A device waited longer than the round timeout for a compute slot.

    Example scenario: the devices holding the node's slots hang in their computation.
    """

    exit_code = 1


TURN_WAIT_S = 0.05
"""Longest wait of a dispatch's first order beyond the slots for those before it to take theirs."""
TURN_POLL_S = 0.0005
"""How often that wait looks (it lasts a few milliseconds, at a round's start)."""


@dataclass(frozen=True, slots=True)
class ComputeSlots:
    """``count`` slots on each node, shared by the run's device processes there (``run_id``
    names them; the pool passes this record with every work order).

    A slot is an exclusive ``flock`` on one of ``count`` files in the node's temporary folder.
    The kernel releases it when the holder closes the file or its process dies, so a device that
    dies computing frees its slot with no one's help. A device that finds every slot taken sleeps
    in the kernel on all of them at once, a thread per file, and takes the first that comes free;
    it does not poll.
    """

    run_id: str
    count: int
    timeout_s: float
    """Longest wait for a slot (the run's ``round_timeout_s``)."""
    dispatch: int = 0
    """The dispatch (one per round phase) that :attr:`turn` counts in."""
    turn: int | None = None
    """This order's place in a dispatch of more orders than slots, while it is among the first
    ``count + 1`` (``None`` otherwise; see :meth:`for_turn`)."""

    def for_turn(self, dispatch: int, turn: int) -> ComputeSlots:
        """These slots for the order sent ``turn``-th (from 0) in ``dispatch``, which holds more
        orders than there are slots.

        The first ``count`` orders of a dispatch go out together with the one after them, and the
        latter may arrive first. So each of the first ``count`` marks its slot taken, and the one
        after waits (at most :data:`TURN_WAIT_S`, in case one of them died or runs on another
        node) until all have, then for the first slot freed: the dispatch order holds. Later
        orders go out as uploads arrive, by when the slot freed has been taken."""
        return dataclasses.replace(self, dispatch=dispatch, turn=turn if turn <= self.count else None)

    @property
    def folder(self) -> Path:
        """Where this node's slot files are (created by the first device that needs one)."""
        return Path(tempfile.gettempdir()) / "deft-ray-slots" / self.run_id

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a slot for the ``with`` block: the first free one, waiting for it if need be.

        Raises:
            ComputeSlotTimeout: no slot came free within :attr:`timeout_s`.
        """
        if self.turn == self.count:
            self._await_first_turns()
        descriptor = self._take()
        if self.turn is not None and self.turn < self.count:
            (self.folder / f"taken-{self.dispatch}-{self.turn}").touch()
        try:
            yield
        finally:
            os.close(descriptor)  # closing the file releases its lock

    def remove(self) -> None:
        """Delete this node's slot files (when the run is over)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _await_first_turns(self) -> None:
        """Wait until the dispatch's first ``count`` orders have taken their slots (or
        :data:`TURN_WAIT_S` has passed), and clear their marks."""
        self.folder.mkdir(parents=True, exist_ok=True)
        marks = [self.folder / f"taken-{self.dispatch}-{turn}" for turn in range(self.count)]
        deadline = time.perf_counter() + TURN_WAIT_S
        while not all(mark.exists() for mark in marks) and time.perf_counter() < deadline:
            time.sleep(TURN_POLL_S)
        for mark in marks:
            mark.unlink(missing_ok=True)

    def _take(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        taken = []
        for index in range(self.count):
            descriptor = os.open(self.folder / f"slot-{index}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                taken.append(descriptor)
                continue
            for other in taken:
                os.close(other)
            return descriptor
        return self._first_freed(taken)

    def _first_freed(self, descriptors: list[int]) -> int:
        """Block on every slot at once; the first lock granted is kept, and each later one is
        released as soon as it is granted, so it passes straight on to whoever waits for it next."""
        won: queue.Queue[int] = queue.Queue(maxsize=1)
        decided = threading.Lock()
        state = {"decided": False}

        def wait_for(descriptor: int) -> None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            with decided:
                first, state["decided"] = not state["decided"], True
            if first:
                won.put(descriptor)
            else:
                os.close(descriptor)

        for descriptor in descriptors:
            threading.Thread(target=wait_for, args=(descriptor,), daemon=True, name="deft-ray-slot").start()
        try:
            return won.get(timeout=self.timeout_s)
        except queue.Empty:
            with decided:
                gave_up = not state["decided"]
                state["decided"] = True
            if not gave_up:  # a slot came free as the wait ran out
                return won.get()
            raise ComputeSlotTimeout(f"no compute slot of the {self.count} on this node came free within "
                                     f"round_timeout_s = {self.timeout_s:.0f} s; raise round_timeout_s or check "
                                     "the devices computing") from None
