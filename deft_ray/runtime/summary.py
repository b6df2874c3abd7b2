"""A run's summary from its round records: what ran, how long it took and where it ended."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from deft_ray.config import RunConfig
from deft_ray.learning.metrics import best
from deft_ray.runtime.records import DeviceMemory, RoundRecord, RunSummary


def summarize(config: RunConfig, records: Sequence[RoundRecord],
              memory_usage: Mapping[str, Mapping[str, float]] | None, *, metric: str) -> RunSummary:
    """The summary of ``records``; ``memory_usage`` is each device process's ``rss_bytes`` and
    ``uss_bytes`` (``None`` when the devices ran in this process). ``best_<metric>`` is the best
    evaluation in the metric's direction (the lowest eval loss or perplexity, else the highest)."""
    evaluated = [r for r in records if r.evaluation]
    device_memory = None
    if memory_usage:
        device_memory = DeviceMemory(
            mean_uss_bytes=float(np.mean([u["uss_bytes"] for u in memory_usage.values()])),
            mean_rss_bytes=float(np.mean([u["rss_bytes"] for u in memory_usage.values()])),
            total_uss_bytes=float(sum(u["uss_bytes"] for u in memory_usage.values())))
    return RunSummary(
        scheme=config.scheme, task=config.data.task, devices=config.num_devices, rounds=len(records),
        clock=config.clock, emulated_time_s=records[-1].emulated_time_s if records else 0.0,
        wall_s=float(sum(r.wall_s for r in records)),
        mean_planned_latency_s=float(np.mean([r.planned_latency_s for r in records])) if records else None,
        mean_measured_latency_s=float(np.mean([r.measured_latency_s for r in records])) if records else None,
        final_loss=records[-1].loss if records else None,
        final_evaluation=dict(evaluated[-1].evaluation) if evaluated else None,
        metric=metric, best_metric=best(metric, [r.evaluation[metric] for r in evaluated]) if evaluated else None,
        events=sum(len(r.events) for r in records), device_memory=device_memory,
        energy_j=math.fsum(r.energy_j or 0.0 for r in records), device_energy_j=device_energy_j(records))


def device_energy_j(records: Sequence[RoundRecord]) -> dict[str, float]:
    """Each device's energy summed over every phase of ``records``."""
    totals: dict[str, list[float]] = {}
    for record in records:
        for phase_devices in (record.devices, *(phase.devices for phase in record.recovery)):
            for name, device in phase_devices.items():
                totals.setdefault(name, []).append(device.energy_j or 0.0)
    return {name: math.fsum(values) for name, values in sorted(totals.items())}
