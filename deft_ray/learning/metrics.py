"""Each task's evaluation metrics, and which way is better: accuracy and binary F1 from
scikit-learn, Pearson and Spearman correlation from scipy.

A causal LM's ``eval_loss``, ``perplexity`` and ``exact_match`` are computed by
:mod:`deft_ray.learning.generation`; loss and perplexity are the metrics where lower is better.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from deft_ray.errors import InputError
from deft_ray.learning.tasks import TaskSpec


def compute_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score predictions with ``spec.metric_names``.

    ``predictions`` are class ids or logits of shape (n, num_labels) for classification, and
    scores of shape (n,) or (n, 1) for regression. F1 is that of the positive class 1, 0.0 when
    there is neither a predicted nor a true positive. Pearson and Spearman correlations of a
    constant input are undefined and reported as 0.0.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels).reshape(-1)
    if spec.is_regression:
        predictions = predictions.reshape(-1).astype(float)
    elif predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    if len(predictions) != len(labels):
        raise InputError("predictions", predictions.shape, f"do not match {len(labels)} labels",
                         "pass one prediction per label")
    return {name: float(_METRICS[name](predictions, labels)) for name in spec.metric_names}


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(labels, predictions)


def _f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0)


def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(predictions: np.ndarray, labels: np.ndarray) -> float:
        from scipy import stats

        if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
            return 0.0
        return getattr(stats, kind)(predictions, labels).statistic

    return score


METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "pearson": (-1.0, 1.0), "spearmanr": (-1.0, 1.0),
    "exact_match": (0.0, 1.0), "eval_loss": (0.0, float("inf")), "perplexity": (1.0, float("inf"))}
"""The values each metric can take (a target outside them can never be reached)."""

_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "pearson": _correlation("pearsonr"),
    "spearmanr": _correlation("spearmanr"),
}


LOWER_IS_BETTER = frozenset({"eval_loss", "perplexity"})
"""Metrics where a smaller value is better; for every other metric a larger one is."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (accuracy, exact match) or a smaller one (loss)."""
    return metric not in LOWER_IS_BETTER


def reaches(metric: str, value: float, target: float) -> bool:
    """Whether ``value`` of ``metric`` is at or beyond ``target`` in the metric's better direction."""
    return value >= target if higher_is_better(metric) else value <= target


def best(metric: str, values: list[float]) -> float:
    """The best of ``values`` of ``metric``: the largest, or the smallest for a loss."""
    return max(values) if higher_is_better(metric) else min(values)
