"""The causal-LM tasks' examples: ``instruction`` and ``text`` from files or the hub, and the built-in
``synthetic-instructions``, in one schema.

Every example becomes three strings: ``prompt`` (what the model is given; empty for ``text``),
``response`` (what it learns to write, the loss's tokens) and ``messages`` (a chat's turns before
the answer, as JSON, else empty). Accepted rows:

- Alpaca: ``instruction``, optional ``input``, ``output``: the prompt is the instruction, then a
  blank line and the input when there is one;
- ``prompt`` and ``response``;
- chat ``messages``: a list of ``{"role", "content"}`` turns whose last is the assistant's answer;
- ``text`` (the ``text`` task): the whole text is the response.

A bad row raises :class:`~deft_ray.errors.InputError` naming the file, the row and the field.
:mod:`deft_ray.learning.causal_batches` renders and tokenises the examples.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from deft_ray.errors import InputError

if TYPE_CHECKING:
    import datasets

    from deft_ray.learning.tasks import TaskSpec

EVAL_HOLDOUT_FRACTION = 0.05
"""Share of the training rows held out for evaluation when no eval split is given."""
ROW_FIX = ("give every row instruction/output (Alpaca), prompt/response, or messages "
           "[{role, content}, ...] ending with the assistant's answer")


def load_causal_task(spec: TaskSpec, *, train_file: str | None, eval_file: str | None, dataset: str | None,
                     seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The train and validation splits of a causal-LM task, every row checked.

    ``synthetic-instructions`` is generated from ``seed``. The others read ``train_file`` (and
    ``eval_file``), or the hub dataset ``dataset`` (its ``train`` split, and its ``validation`` or
    ``test`` split); without an eval split a seeded :data:`EVAL_HOLDOUT_FRACTION` of the training
    rows is held out.
    """
    from deft_ray.learning.instruction_files import read_rows

    if spec.name == "synthetic-instructions":
        from deft_ray.learning.synthetic_instructions import synthetic_instructions

        train, validation = synthetic_instructions(seed)
        return _dataset(train), _dataset(validation)
    text = spec.name == "text"
    if train_file is None and dataset is None:
        raise InputError("data.train_file", None, f"task {spec.name!r} needs examples",
                         "set data.train_file (JSON, JSONL, CSV or Parquet) or data.dataset (a hub name)")
    if train_file is not None:
        train = _examples(read_rows(train_file, field="data.train_file"), text=text)
        validation = None
    else:
        train, validation = _hub_examples(dataset, text=text)
    if eval_file is not None:
        validation = _examples(read_rows(eval_file, field="data.eval_file"), text=text)
    if validation is None:
        train, validation = _hold_out(train, seed)
    return _dataset(train), _dataset(validation)


def example_of(where: str, row: Any, *, text: bool) -> tuple[str, str, str]:
    """``(prompt, response, messages)`` of one row; ``where`` names it in errors."""
    if not isinstance(row, dict):
        raise InputError(where, row, "is not an object with named fields", ROW_FIX)
    if text:
        return "", _string(where, row, "text"), ""
    messages = row.get("messages")
    if isinstance(messages, str) and messages.strip():  # a CSV cell holds the turns as JSON
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise InputError(f"{where} field 'messages'", messages, "is not a JSON list of turns",
                             'write [{"role": "user", "content": ...}, ...]') from None
    if messages is not None and messages != "":
        return "", _last_answer(where, messages), json.dumps(_turns(where, messages)[:-1])
    if "instruction" in row or "output" in row:
        instruction, output = _string(where, row, "instruction"), _string(where, row, "output")
        extra = row.get("input")
        if extra is not None and not isinstance(extra, str):
            raise InputError(f"{where} field 'input'", extra, "is not text", "give the input as a string or leave it out")
        return instruction + (f"\n\n{extra}" if extra and extra.strip() else ""), output, ""
    if "prompt" in row or "response" in row:
        return _string(where, row, "prompt"), _string(where, row, "response"), ""
    raise InputError(where, sorted(row), "has none of the fields instruction/output, prompt/response, messages",
                     ROW_FIX)


def _string(where: str, row: dict, field: str) -> str:
    value = row.get(field)
    if field not in row or value is None:
        raise InputError(f"{where} field {field!r}", None, "is missing", f"give every row a {field}")
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where} field {field!r}", value, "must be non-empty text", f"give every row a {field}")
    return value


def _turns(where: str, messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where} field 'messages'", messages, "must be a non-empty list of turns",
                         'write [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]')
    turns = []
    for i, turn in enumerate(messages):
        if (not isinstance(turn, dict) or not isinstance(turn.get("role"), str)
                or not isinstance(turn.get("content"), str)):
            raise InputError(f"{where} field 'messages'[{i}]", turn, "is not a {role, content} turn",
                             "give every turn a role and a text content")
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def _last_answer(where: str, messages: Any) -> str:
    turns = _turns(where, messages)
    if turns[-1]["role"] != "assistant" or not turns[-1]["content"].strip() or len(turns) < 2:
        raise InputError(f"{where} field 'messages'", turns[-1], "does not end with a non-empty assistant answer "
                         "after a prompt", "end every chat with the assistant turn to learn")
    return turns[-1]["content"]


def _examples(rows: Iterable[tuple[str, Any]], *, text: bool) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {"prompt": [], "response": [], "messages": []}
    for where, row in rows:
        for name, value in zip(columns, example_of(where, row, text=text)):
            columns[name].append(value)
    return columns


def _hub_examples(name: str, *, text: bool) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    import datasets

    try:
        splits = datasets.load_dataset(name)
    except (OSError, ValueError) as error:  # ConnectionError, offline mode, missing cache, unknown name
        raise InputError("data.dataset", name, f"cannot be loaded ({str(error).splitlines()[0][:120]})",
                         "give a hub dataset reachable from here, or data.train_file") from None
    if "train" not in splits:
        raise InputError("data.dataset", name, f"has no train split (splits: {sorted(splits)})",
                         "give a dataset with a train split")
    evaluation = next((s for s in ("validation", "test", "eval") if s in splits), None)

    def rows(split: str):
        return ((f"{name}[{split}] row {i}", row) for i, row in enumerate(splits[split], start=1))

    return _examples(rows("train"), text=text), (_examples(rows(evaluation), text=text) if evaluation else None)


def _hold_out(train: dict[str, list[str]], seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    size = len(train["prompt"])
    if size < 2:
        raise InputError("data.train_file", f"{size} row", "is too few to hold out an evaluation split",
                         "give more rows or data.eval_file")
    order = np.random.default_rng(seed).permutation(size)
    held = set(order[:max(1, int(round(EVAL_HOLDOUT_FRACTION * size)))].tolist())
    pick = lambda keep: {k: [v[i] for i in range(size) if (i in held) != keep] for k, v in train.items()}  # noqa: E731
    return pick(True), pick(False)


def _dataset(columns: dict[str, list[str]]) -> datasets.Dataset:
    import datasets

    text = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features({k: text for k in columns}))
