"""How a device process spent its start-up: CPU and wall seconds per stage.

A device process's start-up has four stages: ``worker`` (everything before the device's
constructor runs: the Ray worker booting and unpickling the constructor's arguments, which
imports the deft-ray modules their classes live in; the shared backbone arrives zero-copy),
``imports`` (torch, transformers and peft), ``model`` (building the LoRA model around the shared
backbone) and ``data`` (the batch stream over the device's own examples). CPU seconds come from
``time.process_time`` (the whole process, every thread), wall seconds from the process's age
(``psutil``), so the stages add up to the process's life until it was ready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STAGES = ("worker", "imports", "model", "data")


@dataclass(frozen=True, slots=True)
class StartupTimes:
    """One device process's start-up, stage by stage; ``devices`` emulated devices share it."""

    devices: int
    worker_cpu_s: float
    worker_wall_s: float
    imports_cpu_s: float
    imports_wall_s: float
    model_cpu_s: float
    model_wall_s: float
    data_cpu_s: float
    data_wall_s: float

    @property
    def cpu_s(self) -> float:
        return self.worker_cpu_s + self.imports_cpu_s + self.model_cpu_s + self.data_cpu_s

    @property
    def wall_s(self) -> float:
        return self.worker_wall_s + self.imports_wall_s + self.model_wall_s + self.data_wall_s

    def per_device(self) -> dict[str, float]:
        """Each stage's CPU and wall seconds divided by the devices sharing the process
        (``imports_cpu_s``, ..., ``cpu_s``, ``wall_s``): one emulated device's share."""
        share = {f"{stage}_{kind}_s": getattr(self, f"{stage}_{kind}_s") / self.devices
                 for stage in STAGES for kind in ("cpu", "wall")}
        return {**share, "cpu_s": self.cpu_s / self.devices, "wall_s": self.wall_s / self.devices}


class StartupWatch:
    """Accumulates the stages of one process's start-up; several devices built in one process
    (a packed host) add to the same watch."""

    def __init__(self) -> None:
        import psutil

        now = time.time()
        self.worker = (time.process_time(), now - psutil.Process().create_time())
        self.totals = {stage: [0.0, 0.0] for stage in STAGES[1:]}
        self._mark = (time.process_time(), time.perf_counter())

    def start(self) -> None:
        """Begin timing a stage."""
        self._mark = (time.process_time(), time.perf_counter())

    def stop(self, stage: str) -> None:
        """Add the time since :meth:`start` to ``stage``."""
        cpu, wall = self._mark
        self.totals[stage][0] += time.process_time() - cpu
        self.totals[stage][1] += time.perf_counter() - wall
        self.start()

    def times(self, devices: int) -> StartupTimes:
        values = {"worker_cpu_s": self.worker[0], "worker_wall_s": self.worker[1]}
        for stage, (cpu, wall) in self.totals.items():
            values[f"{stage}_cpu_s"], values[f"{stage}_wall_s"] = cpu, wall
        return StartupTimes(devices=devices, **values)
