"""Reading instruction and text rows from JSON, JSONL, CSV or Parquet files, every row checked.

A row is one example. :func:`read_rows` returns the rows as dicts with the place each came from
(``<file> line N`` for JSONL and CSV, ``<file> row N`` for JSON arrays and Parquet), so that
:func:`~deft_ray.learning.instructions.example_of` can name the file, row and field of a bad value.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from deft_ray.errors import InputError

FORMATS = (".json", ".jsonl", ".csv", ".parquet")


def read_rows(path: str, *, field: str) -> list[tuple[str, Any]]:
    """``(where, row)`` for every row of the file at ``path`` (named ``field`` in errors).

    Raises:
        InputError: no such file, an unknown suffix, unreadable JSON or Parquet, no rows.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(field, path, "no such file", "give a JSON, JSONL, CSV or Parquet file")
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(field, path, f"has suffix {suffix or '(none)'!r}", f"give a file ending in {', '.join(FORMATS)}")
    reader = {".json": _json_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}[suffix]
    rows = reader(file)
    if not rows:
        raise InputError(field, path, "has no rows", "give a file with at least one example")
    return rows


def _json_rows(file: Path) -> list[tuple[str, Any]]:
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # one object per line, under a .json name
            return _jsonl_rows(file)
        raise InputError(f"{file} line {error.lineno}", error.msg, "is not valid JSON", "fix the JSON there") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"train": [...]} or {"data": [...]}
    if not isinstance(data, list):
        raise InputError(str(file), type(data).__name__, "is not a list of examples",
                         "write a JSON array of objects, or one object per line (JSONL)")
    return [(f"{file} row {i}", row) for i, row in enumerate(data, start=1)]


def _jsonl_rows(file: Path) -> list[tuple[str, Any]]:
    rows = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{file} line {number}", json.loads(line)))
            except json.JSONDecodeError as error:
                raise InputError(f"{file} line {number}", line.strip(), f"is not valid JSON ({error.msg})",
                                 "write one JSON object per line") from None
    return rows


def _csv_rows(file: Path) -> list[tuple[str, Any]]:
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for row in reader:
            if None in row:  # more cells than header columns
                raise InputError(f"{file} line {reader.line_num}", row[None], "has more cells than the header",
                                 "quote cells that hold commas")
            rows.append((f"{file} line {reader.line_num}", row))
    return rows


def _parquet_rows(file: Path) -> list[tuple[str, Any]]:
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(file)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise InputError(str(file), type(error).__name__, f"is not a readable Parquet file ({str(error)[:80]})",
                         "give a Parquet file written by pandas, pyarrow or datasets") from None
    return [(f"{file} row {i}", row) for i, row in enumerate(table.to_pylist(), start=1)]
