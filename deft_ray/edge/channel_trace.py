"""Channel traces: measured per-round channel gains that replace the radio model where they apply.

A trace is a CSV file with the columns ``round``, ``device`` and ``channel_gain`` (a linear power
gain, path loss and fading included; ``device`` is a device's name such as ``phone-0``; other
columns are ignored). At round r a device the trace names has the gain of its latest row with
``round <= r``: a gap, and every round past the device's last row, holds its last gain. Before a
device's first row, and for devices the trace does not name, the model applies (path loss,
shadowing, fading). See docs/configuration.md, ``network.channel_trace``.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping

COLUMNS = ("round", "device", "channel_gain")


class TraceProblem(ValueError):
    """Something wrong in a trace file: ``where`` in it (a line, a device), what, and the fix."""

    def __init__(self, where: str, problem: str, fix: str):
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem, self.fix = where, problem, fix


def read_text(path: str | Path, *, what: str) -> str:
    """A trace file's text; a missing or unreadable file is a :class:`TraceProblem`."""
    file = Path(path)
    if not file.is_file():
        raise TraceProblem("", "no such file", f"give the path of a {what}")
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise TraceProblem("", f"is not UTF-8 text (byte {error.start})", "save it as UTF-8") from None
    except OSError as error:
        raise TraceProblem("", f"cannot be read ({error.strerror})", "check its permissions") from None


@dataclass(frozen=True, slots=True)
class ChannelTrace:
    """Device name -> its rows as (round, gain), in round order."""

    rows: Mapping[str, tuple[tuple[int, float], ...]]

    def gain(self, device: str, round_idx: int) -> float | None:
        """The trace's gain of ``device`` at ``round_idx`` (``None``: the model applies)."""
        rows = self.rows.get(device)
        if not rows:
            return None
        at = bisect.bisect_right([r for r, _ in rows], round_idx)
        return rows[at - 1][1] if at else None


def read_channel_trace(path: str | Path, device_names: Collection[str]) -> ChannelTrace:
    """Read and check a channel trace for a run with ``device_names``.

    Raises:
        TraceProblem: no such file, a missing column, a round that is not a positive whole number,
            a gain that is not a positive finite number, an unknown device, or a (round, device)
            given twice; ``where`` names the line.
    """
    reader = csv.DictReader(read_text(path, what="CSV file with columns round,device,channel_gain").splitlines())
    header = [name.strip() for name in (reader.fieldnames or [])]
    for column in COLUMNS:
        if column not in header:
            raise TraceProblem("line 1", f"has no column {column!r} (columns: {', '.join(header) or 'none'})",
                               "give a header line round,device,channel_gain")
    reader.fieldnames = header
    rows: dict[str, dict[int, float]] = {}
    for line, row in enumerate(reader, start=2):
        round_text, device, gain_text = ((row.get(c) or "").strip() for c in COLUMNS)
        try:
            round_idx = int(round_text)
        except ValueError:
            round_idx = 0
        if round_idx < 1:
            raise TraceProblem(f"line {line}", f"round = {round_text!r} is not a round", "give a 1-based round number")
        if device not in device_names:
            known = ", ".join(sorted(device_names)[:6]) + (", ..." if len(device_names) > 6 else "")
            raise TraceProblem(f"line {line}", f"device = {device!r} is not a device of the run",
                               f"use a device name such as {known}")
        try:
            gain = float(gain_text)
        except ValueError:
            gain = math.nan
        if not (math.isfinite(gain) and gain > 0):
            raise TraceProblem(f"line {line}", f"channel_gain = {gain_text!r} must be a positive number",
                               "give linear power gains above 0 (e.g. 1e-11)")
        if round_idx in rows.setdefault(device, {}):
            raise TraceProblem(f"line {line}", f"round {round_idx} of device {device!r} is given twice",
                               "keep one row per round and device")
        rows[device][round_idx] = gain
    return ChannelTrace({name: tuple(sorted(by_round.items())) for name, by_round in rows.items()})
