"""Reporting a run to the tools researchers look in (TensorBoard, MLflow, W&B); no torch, no Ray.

The driver gives every reporter of ``report_to`` the run's config, each round's record as it
arrives, and, once the run finished, its summary and run directory (plots and adapter).
"""

from deft_ray.reporting.base import Reporter, make_reporters

__all__ = ["Reporter", "make_reporters"]
