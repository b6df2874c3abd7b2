"""Consoles that read well on a terminal and in a log file (``ray job logs``, a pipe, CI)."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

#: Columns a console writing to something that is not a terminal lays lines and tables out in,
#: so that nothing is wrapped or cut at rich's default of 80.
LOG_WIDTH = 240


def output_console(file: TextIO | None = None) -> Console:
    """A rich console on ``file`` (default: stdout): the terminal's width on a terminal, else
    :data:`LOG_WIDTH` columns (or ``COLUMNS`` when set), without colour codes."""
    file = file or sys.stdout
    if file.isatty():
        return Console(file=file)
    import os

    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else LOG_WIDTH
    return Console(file=file, width=width, no_color=True, highlight=False)
