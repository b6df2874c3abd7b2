"""Stopping a run on SIGINT or SIGTERM without losing it.

The first signal asks the run to stop: the coordinator finishes the round in flight, checkpoints
it, and the driver prints how to resume and exits with 130 (SIGINT) or 143 (SIGTERM). A second
signal stops at once (:class:`StopNow`), keeping whatever was already checkpointed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from deft_ray.errors import DeftRayError

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code_of(signum: int) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class StopRequest:
    """The first SIGINT or SIGTERM, as a flag the coordinator checks between rounds."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.forwarded = False
        """Whether the request was passed on to a coordinator in another process."""

    def request(self, signum: int) -> None:
        self.signum = signum
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def handle(self, signum: int, _frame) -> None:
        """The signal handler: the first signal requests a stop, a second raises :class:`StopNow`."""
        if self.requested:
            raise StopNow(signum)
        self.request(signum)

    def install(self) -> None:
        """Handle SIGINT and SIGTERM here (again after a library replaced the handlers, as
        ``ray.init`` does); only the main thread can."""
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, self.handle)


class StopNow(BaseException):
    """A second signal: stop at once. A ``BaseException``, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupted(DeftRayError):
    """The run stopped on a signal; the message says what was kept and how to resume."""

    label = "interrupted"

    def __init__(self, message: str, *, signum: int):
        super().__init__(message)
        self.exit_code = exit_code_of(signum)


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Within the block, the first SIGINT/SIGTERM sets ``stop`` and a second raises :class:`StopNow`;
    the previous handlers come back after it. Outside the main thread the block runs without them."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    stop.install()
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
