"""GLUE tasks from local TSV files (every row checked) or the dataset hub, in the common schema."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

from deft_ray.errors import InputError
from deft_ray.learning.tasks import TaskSpec, to_dataset

if TYPE_CHECKING:
    import datasets

COLUMNS = ("sentence1", "sentence2", "label")
DATA_DIR_FIX = "pass --data-dir pointing at a folder with <task>/train.tsv and <task>/validation.tsv"


def read_tsv(path: Path, spec: TaskSpec) -> datasets.Dataset:
    """Read and validate every row of a ``sentence1<TAB>sentence2<TAB>label`` file."""
    if not path.is_file():
        raise InputError("data_dir", str(path.parents[1]), f"{path} does not exist", DATA_DIR_FIX)
    columns: dict[str, list] = {column: [] for column in COLUMNS}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != list(COLUMNS):
            raise InputError(f"{path} line 1", header, "wrong header", "the first line must be "
                             "sentence1<TAB>sentence2<TAB>label")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if len(row) != 3:
                raise InputError(where, "\t".join(row), f"has {len(row)} tab-separated fields, "
                                 "expected 3", "fix the row: sentence1<TAB>sentence2<TAB>label")
            columns["sentence1"].append(row[0])
            columns["sentence2"].append(row[1])
            columns["label"].append(_parse_label(row[2], spec, where))
    if not columns["label"]:
        raise InputError("data_dir", str(path.parents[1]), f"{path} has no examples", DATA_DIR_FIX)
    return to_dataset(spec, columns)


def _parse_label(text: str, spec: TaskSpec, where: str) -> int | float:
    if spec.is_regression:
        parse, (low, high), expected = float, spec.label_range, "a number in [{}, {}]"
    else:
        parse, (low, high), expected = int, (0, spec.num_labels - 1), "a class id in {}..{}"
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise InputError(where, text, f"label is not {expected.format(low, high)}",
                         "fix the label in that row")
    return value


def load_hub(spec: TaskSpec) -> tuple[datasets.Dataset, datasets.Dataset]:
    import datasets

    try:
        glue = datasets.load_dataset("nyu-mll/glue", spec.name)
    except OSError as error:  # ConnectionError, offline mode, missing cache
        raise InputError("data_dir", None, f"the dataset hub is unreachable ({error})",
                         DATA_DIR_FIX) from error
    return tuple(_from_hub_split(glue[split], spec) for split in ("train", "validation"))


def _from_hub_split(split: datasets.Dataset, spec: TaskSpec) -> datasets.Dataset:
    """Map a hub GLUE split (``sentence`` or ``sentence1/sentence2``, ``label``, ``idx``)."""
    first = split[spec.text_fields[0]]
    second = split[spec.text_fields[1]] if len(spec.text_fields) > 1 else [""] * len(first)
    return to_dataset(spec, {"sentence1": first, "sentence2": second, "label": split["label"]})
