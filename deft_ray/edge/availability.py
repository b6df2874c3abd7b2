"""Device availability over emulated time: Markov on/off processes and online-interval traces.

Each device has a timeline of online and offline spells (docs/method.md, "Channels and
availability over time"):

- a device of a group with ``mean_online_s`` and ``mean_offline_s`` follows a two-state Markov
  process: online and offline sojourns are exponential with those means, drawn from the device's
  own seeded generator; at time 0 it is online with the stationary probability
  ``mean_online_s / (mean_online_s + mean_offline_s)``;
- a device that ``reliability.availability_trace`` names is online exactly in the trace's
  ``[start_s, end_s)`` intervals (an empty list: never);
- any other device is always online.

Queries go forward in emulated time (a Markov timeline is drawn lazily as time advances).
"""

from __future__ import annotations

import bisect
import json
import math
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from deft_ray.edge.channel_trace import TraceProblem, read_text

#: Entropy that separates the availability streams from the run's other seeded streams.
_STREAM = 0xA7A1


class AlwaysOnline:
    def state_at(self, time_s: float) -> tuple[bool, float]:
        """Whether the device is online at ``time_s``, and when that state ends."""
        return True, math.inf


class OnlineIntervals:
    """Online exactly within sorted, disjoint ``[start_s, end_s)`` intervals."""

    def __init__(self, intervals: Sequence[tuple[float, float]]):
        merged: list[tuple[float, float]] = []
        for start, end in intervals:
            if merged and merged[-1][1] == start:  # [0, 10] then [10, 20] is one spell
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        self.intervals = tuple(merged)
        self.starts = [start for start, _ in self.intervals]

    def state_at(self, time_s: float) -> tuple[bool, float]:
        at = bisect.bisect_right(self.starts, time_s) - 1
        if at >= 0 and time_s < self.intervals[at][1]:
            return True, self.intervals[at][1]
        return False, self.intervals[at + 1][0] if at + 1 < len(self.intervals) else math.inf


class MarkovOnOff:
    """Exponential online and offline sojourns with the given means, seeded per device."""

    def __init__(self, name: str, *, mean_online_s: float, mean_offline_s: float, seed: int):
        self.means = {True: float(mean_online_s), False: float(mean_offline_s)}
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM, *name.encode()]))
        self.online = bool(self.rng.random() < mean_online_s / (mean_online_s + mean_offline_s))
        self.until_s = float(self.rng.exponential(self.means[self.online]))

    def state_at(self, time_s: float) -> tuple[bool, float]:
        while self.until_s <= time_s:
            self.online = not self.online
            self.until_s += float(self.rng.exponential(self.means[self.online]))
        return self.online, self.until_s

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "online": self.online, "until_s": self.until_s}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])
        self.online, self.until_s = bool(state["online"]), float(state["until_s"])


class Availability:
    """Every device's timeline, by name (a device without one is always online)."""

    def __init__(self, timelines: Mapping[str, Any]):
        self.timelines = dict(timelines)

    def _state(self, name: str, time_s: float) -> tuple[bool, float]:
        return self.timelines.get(name, AlwaysOnline()).state_at(time_s)

    @property
    def dynamic(self) -> bool:
        """Whether any device is ever offline."""
        return any(not isinstance(t, AlwaysOnline) for t in self.timelines.values())

    def online(self, names: Sequence[str], time_s: float) -> tuple[str, ...]:
        """Those of ``names`` online at ``time_s``."""
        return tuple(name for name in names if self._state(name, time_s)[0])

    def online_until_s(self, name: str, time_s: float) -> float:
        """When the online spell of ``name`` that holds ``time_s`` ends (``time_s`` if it is offline)."""
        online, until_s = self._state(name, time_s)
        return until_s if online else time_s

    def offline_after_s(self, name: str, start_s: float, duration_s: float) -> float | None:
        """Seconds after ``start_s`` at which ``name``, online then, goes offline when that is
        within ``duration_s`` (``None``: it stays online throughout)."""
        away_s = self.online_until_s(name, start_s) - start_s
        return away_s if away_s < duration_s else None

    def next_online_s(self, names: Sequence[str], time_s: float) -> float | None:
        """The earliest time after ``time_s`` at which one of ``names`` offline then comes online
        (``None``: none ever does)."""
        later = [until for online, until in (self._state(n, time_s) for n in names) if not online]
        found = min(later, default=math.inf)
        return found if math.isfinite(found) else None

    def state_dict(self) -> dict[str, Any]:
        return {name: t.state_dict() for name, t in self.timelines.items() if isinstance(t, MarkovOnOff)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, saved in state.items():
            if isinstance(self.timelines.get(name), MarkovOnOff):
                self.timelines[name].load_state_dict(saved)


def read_availability_trace(path: str, device_names: Collection[str]) -> dict[str, tuple[tuple[float, float], ...]]:
    """Read and check an availability trace: a JSON object mapping device names to lists of
    ``[start_s, end_s]`` online intervals in emulated seconds, in time order and disjoint.

    Raises:
        TraceProblem: no such file, bad JSON, not an object, an unknown device, or an interval
            that is not two finite numbers with ``0 <= start_s < end_s`` after the previous one.
    """
    text = read_text(path, what="JSON file mapping device names to [[start_s, end_s], ...]")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TraceProblem(f"line {error.lineno}", f"is not valid JSON ({error.msg})", "fix the JSON syntax there") from None
    if not isinstance(data, dict):
        raise TraceProblem("", f"holds a {type(data).__name__}, not an object",
                           'write {"device-0": [[start_s, end_s], ...], ...}')
    intervals = {}
    for name, spells in data.items():
        if name not in device_names:
            known = ", ".join(sorted(device_names)[:6]) + (", ..." if len(device_names) > 6 else "")
            raise TraceProblem(f"device {name!r}", "is not a device of the run", f"use a device name such as {known}")
        if not isinstance(spells, list):
            raise TraceProblem(f"device {name!r}", "must map to a list of [start_s, end_s] intervals",
                               "write [[0, 100], [250, 400]] (or [] for never online)")
        previous_end = 0.0
        for index, spell in enumerate(spells):
            where = f"device {name!r} interval {index}"
            if not (isinstance(spell, list) and len(spell) == 2 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in spell)):
                raise TraceProblem(where, f"{json.dumps(spell)} is not [start_s, end_s]", "give two numbers of seconds")
            start, end = float(spell[0]), float(spell[1])
            if not previous_end <= start < end:
                raise TraceProblem(where, f"[{start:g}, {end:g}] must start at or after {previous_end:g} and end after "
                                   "it starts", "list intervals in time order, disjoint, from 0 on")
            previous_end = end
        intervals[name] = tuple((float(s), float(e)) for s, e in spells)
    return intervals
