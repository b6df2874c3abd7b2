"""The server's validation: the split it scores the adapter on, and the scoring (a classifier's
GLUE metrics, or a causal LM's eval loss, perplexity and exact match: :mod:`deft_ray.learning.generation`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

EVAL_BATCH_SIZE = 128


@dataclass(frozen=True, slots=True)
class ValidationSet:
    """The validation split as numpy columns, and the task spec that scores it."""

    spec: Any
    columns: Mapping[str, np.ndarray]
    generation: Any = None
    """A causal LM's prompts to answer greedily (:class:`~deft_ray.learning.causal_batches.GenerationSet`),
    for ``exact_match``; ``None`` scores no generations."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics :func:`evaluate_adapter` returns, the primary one first."""
        from deft_ray.learning.tasks import scored_metric_names

        return scored_metric_names(self.spec, generates=self.generation is not None)


def evaluate_adapter(model: Any, evaluation: ValidationSet) -> dict[str, float]:
    """Score the model on the validation columns with the task's metrics, the primary one first
    (a classifier's examples batched by length, each batch cut to its longest)."""
    import torch

    from deft_ray.learning.batches import trim_padding
    from deft_ray.learning.metrics import compute_metrics

    if getattr(evaluation.spec, "kind", "classification") == "causal-lm":
        from deft_ray.learning.generation import evaluate_causal

        return evaluate_causal(model, evaluation.columns, evaluation.generation, evaluation.metric_names)
    columns = evaluation.columns
    labels = columns["labels"]
    lengths = columns["attention_mask"].sum(axis=1) if "attention_mask" in columns else np.zeros(len(labels))
    order = np.argsort(lengths, kind="stable")
    outputs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # the devices wait while the server evaluates
    try:
        for start in range(0, len(labels), EVAL_BATCH_SIZE):
            rows = order[start:start + EVAL_BATCH_SIZE]
            batch = trim_padding({k: v[rows] for k, v in columns.items()})
            batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
            outputs.append(model.evaluate_logits(batch).cpu().numpy())
    finally:
        torch.set_num_threads(threads)
    predictions = np.empty_like(np.concatenate(outputs))
    predictions[order] = np.concatenate(outputs)
    if evaluation.spec.is_regression:
        predictions = predictions.reshape(-1)
    return compute_metrics(evaluation.spec, predictions, labels)
