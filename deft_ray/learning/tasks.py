"""Tasks: what each task is (its spec and metrics), the registry of names, and loading one.

A classification task arrives in one schema: ``datasets.Dataset`` splits ``train`` and
``validation`` with columns ``sentence1``, ``sentence2`` (empty for single-sentence tasks) and
``label`` (int, or float for the regression task stsb). GLUE comes from local TSV files or the hub
(:mod:`deft_ray.learning.glue`); ``synthetic-sentiment`` is generated
(:mod:`deft_ray.learning.synthetic`). A causal-LM task (``kind == "causal-lm"``: ``instruction``,
``text``, ``synthetic-instructions``) has columns ``prompt``, ``response`` and ``messages``
instead (:mod:`deft_ray.learning.instructions`).

Importing this module costs numpy only; ``datasets`` loads on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deft_ray.errors import InputError, UnknownNameError

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the rest of the package needs to know about a task."""

    name: str
    num_labels: int
    """Classes of a classification task; 1 for regression."""
    is_regression: bool
    text_fields: tuple[str, ...]
    """Text columns of the source (the hub's names); two means a sentence-pair task."""
    metric_names: tuple[str, ...]
    """Metrics reported by :func:`compute_metrics`; the first is the primary one."""
    label_range: tuple[float, float] | None = None
    """Inclusive range of a regression label."""
    kind: str = "classification"
    """"classification" (a sequence classifier's task) or "causal-lm" (a decoder's)."""


@dataclass(frozen=True)
class TaskData:
    """A task's spec and its two splits (raw text, or tokenised by :func:`tokenize`)."""

    spec: TaskSpec
    train: datasets.Dataset
    validation: datasets.Dataset


_TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("sst2", 2, False, ("sentence",), ("accuracy",)),
        TaskSpec("rte", 2, False, ("sentence1", "sentence2"), ("accuracy",)),
        TaskSpec("mrpc", 2, False, ("sentence1", "sentence2"), ("f1", "accuracy")),
        TaskSpec("stsb", 1, True, ("sentence1", "sentence2"), ("pearson", "spearmanr"), (0.0, 5.0)),
        TaskSpec("synthetic-sentiment", 2, False, ("sentence",), ("accuracy",)),
        TaskSpec("instruction", 0, False, ("prompt", "response"), ("eval_loss", "perplexity", "exact_match"),
                 kind="causal-lm"),
        TaskSpec("text", 0, False, ("text",), ("eval_loss", "perplexity"), kind="causal-lm"),
        TaskSpec("synthetic-instructions", 0, False, ("prompt", "response"),
                 ("exact_match", "eval_loss", "perplexity"), kind="causal-lm"),
    )
}


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return sorted(_TASKS)


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; raises :class:`UnknownNameError` listing the valid names."""
    if name not in _TASKS:
        raise UnknownNameError("task", name, task_names())
    return _TASKS[name]


def scored_metric_names(spec: TaskSpec, *, generates: bool) -> tuple[str, ...]:
    """The metrics a run scores, the primary one first: ``exact_match`` needs generations
    (``generates``: a causal LM with ``data.exact_match_examples`` above 0)."""
    return tuple(name for name in spec.metric_names if generates or name != "exact_match")


def primary_metric(spec: TaskSpec) -> str:
    """The metric that ranks runs: accuracy (sst2, rte, synthetic), f1 (mrpc), pearson (stsb),
    eval_loss (instruction, text), exact_match (synthetic-instructions)."""
    return spec.metric_names[0]


def load_task(name: str, *, data_dir: str | None = None, seed: int = 0,
              max_train_examples: int | None = None, max_eval_examples: int | None = None,
              train_file: str | None = None, eval_file: str | None = None, dataset: str | None = None) -> TaskData:
    """Load task ``name`` in the common schema.

    Args:
        name: a name from :func:`task_names`.
        data_dir: folder holding ``<name>/train.tsv`` and ``<name>/validation.tsv``; ``None``
            downloads a GLUE task from the hub (``nyu-mll/glue``). Generated tasks ignore it.
        seed: seeds the synthetic task and the subsamples. (default: 0)
        max_train_examples, max_eval_examples: keep a seeded random subset of at most this many
            examples. (default: None, keep all)
        train_file, eval_file, dataset: the sources of ``instruction`` and ``text``: JSON, JSONL,
            CSV or Parquet files, or a hub dataset name (:func:`~deft_ray.learning.instructions.load_causal_task`).

    Raises:
        UnknownNameError: unknown task. InputError: missing or malformed files (naming the file,
            row and field), hub unreachable.
    """
    from deft_ray.learning.glue import load_hub, read_tsv
    from deft_ray.learning.synthetic import GENERATORS

    spec = get_task(name)
    if spec.kind == "causal-lm":
        from deft_ray.learning.instructions import load_causal_task

        train, validation = load_causal_task(spec, train_file=train_file, eval_file=eval_file, dataset=dataset,
                                             seed=seed)
    elif name in GENERATORS:
        train, validation = GENERATORS[name](seed)
    elif data_dir is not None:
        folder = Path(data_dir) / name
        train, validation = (read_tsv(folder / f"{split}.tsv", spec) for split in ("train", "validation"))
    else:
        train, validation = load_hub(spec)
    rng = np.random.default_rng(seed)
    train = _subsample(train, max_train_examples, "max_train_examples", rng)
    validation = _subsample(validation, max_eval_examples, "max_eval_examples", rng)
    return TaskData(spec, train, validation)


def to_dataset(spec: TaskSpec, columns: dict[str, list]) -> datasets.Dataset:
    import datasets

    label = datasets.Value("float32" if spec.is_regression else "int64")
    text = datasets.Value("string")
    features = datasets.Features({"sentence1": text, "sentence2": text, "label": label})
    return datasets.Dataset.from_dict(columns, features=features)


def _subsample(split: datasets.Dataset, limit: int | None, field: str,
               rng: np.random.Generator) -> datasets.Dataset:
    if limit is not None and limit < 1:
        raise InputError(field, limit, "must be at least 1", "use None to keep every example")
    if limit is None or limit >= len(split):
        return split
    return split.select(np.sort(rng.permutation(len(split))[:limit]))
