"""Python's cyclic garbage collector kept off a device process's start-up and its long-lived objects.

A device process imports torch, transformers and peft and builds a model: some 400,000 Python
objects. While they are created, the collector keeps running full collections over all of them
(each one about 0.15 CPU s here, several in a row), and later full collections would walk them
again in the middle of a device's computation. :func:`start_up_collection` pauses the collector
while a process starts, then moves every object that exists into the permanent generation
(:func:`gc.freeze`), so that later collections only look at what the rounds create. Twelve
processes starting at once measured 0.74x and 0.85x the start-up CPU seconds with it
(``benchmarks/startup_collector.py``, docs/results.md); the little garbage the start-up leaves
(about 9 MB) stays, and one collection before the freeze, 0.3 CPU s, did not give it back.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from collections.abc import Iterator


_process_started = False
"""Whether this process's start-up has run (and frozen its objects) already."""


@contextmanager
def start_up_collection() -> Iterator[None]:
    """Pause the collector for the block's duration; on leaving, freeze every live object and
    resume the collector (if it was on). Objects frozen are never collected afterwards, so only a
    process's first start-up does this: later builds in the same process (a packed host's devices
    inside its own start-up, or one rebuilt after a failure) run with the collector as it is, so
    the garbage of what a rebuild replaces is still collected."""
    global _process_started
    if _process_started:
        yield
        return
    _process_started = True
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
