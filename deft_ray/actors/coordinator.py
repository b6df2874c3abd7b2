"""The coordinator: the one place where the round loop lives.

Each round (DESIGN.md, "The round, as data flows through it"): build the Instance from the devices'
current channels and the block profile, ask the planner for a Plan, publish the adapter once,
send every involved device its blocks, collect the uploads as they arrive, check that every block
came exactly once, assemble the gradients, step the optimizer, evaluate every few rounds and
append the round's record to the ledger.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from deft_ray.channel import channel_gain, dbm_to_w
from deft_ray.config import RunConfig
from deft_ray.errors import DeftRayError
from deft_ray.ledger import RunDirectory
from deft_ray.planners import BlockCost, DeviceState, Instance, Plan
from deft_ray.records import BlockUpload, DeviceSpec, RoundRecord, WorkOrder

EVAL_BATCH_SIZE = 128


class RoundError(DeftRayError):
    """A round could not complete.

    Example scenario: a device's upload did not arrive within ``round_timeout_s``.
    """

    exit_code = 1


class DevicePool(Protocol):
    """Runs one round's work orders on the devices and returns each upload with the wall seconds
    from dispatch to its arrival. ``adapter`` is published once for all devices."""

    def train(self, orders: Mapping[str, WorkOrder], adapter: Mapping[str, np.ndarray], *,
              timeout_s: float) -> list[tuple[BlockUpload, float]]: ...


class PlannerLike(Protocol):
    def plan(self, instance: Instance, round_idx: int) -> Plan: ...


class LocalDevicePool:
    """Devices in this process, run one after the other (tests and debugging)."""

    def __init__(self, devices: Sequence[Any]):
        self.devices = {device.spec.name: device for device in devices}

    def train(self, orders, adapter, *, timeout_s):
        results = []
        start = time.perf_counter()
        for name, order in orders.items():
            upload = self.devices[name].train(order, adapter)
            results.append((upload, time.perf_counter() - start))
        return results


@dataclass(frozen=True, slots=True)
class ValidationSet:
    """The validation split as numpy columns, and the task spec that scores it."""

    spec: Any
    columns: Mapping[str, np.ndarray]


class Coordinator:
    """Drives the rounds of one run. Plain class; devices and the planner are reached through
    :class:`DevicePool` and :class:`PlannerLike`, so it runs with Ray actors or in-process."""

    def __init__(self, *, config: RunConfig, model: Any, profile: Sequence[BlockCost], specs: Sequence[DeviceSpec],
                 pool: DevicePool, planner: PlannerLike, evaluation: ValidationSet, run_dir: RunDirectory,
                 events: Sequence[Mapping[str, Any]] = (), server_stream: Any = None):
        import torch

        self.config = config
        self.model = model
        self.profile = tuple(profile)
        self.specs = list(specs)
        self.pool = pool
        self.planner = planner
        self.evaluation = evaluation
        self.run_dir = run_dir
        self.server_stream = server_stream
        """Batches for the head when it is trained at the server (``head_with="server"``)."""
        self.rng = np.random.default_rng(config.seed)
        parameters = list(model.named_trainable_parameters().values())
        if config.optimizer.name == "adamw":
            self.optimizer = torch.optim.AdamW(parameters, lr=config.optimizer.lr,
                                               weight_decay=config.optimizer.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(parameters, lr=config.optimizer.lr,
                                             weight_decay=config.optimizer.weight_decay)
        self.emulated_time_s = 0.0
        self.pending_events = list(events)
        self.records: list[RoundRecord] = []
        self.summary: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------ the loop
    def run(self) -> Iterator[RoundRecord]:
        """Run every round, yielding each record as it is written; then save the adapter,
        summary and plots."""
        for round_idx in range(1, self.config.rounds + 1):
            yield self.run_round(round_idx)
        self.summary = self.finish()

    def run_round(self, round_idx: int) -> RoundRecord:
        wall_start = time.perf_counter()
        instance = self.instance_for_round()
        plan = self.planner.plan(instance, round_idx)
        orders = self.work_orders(instance, plan, round_idx)
        adapter = {name: value.numpy() for name, value in self.model.trainable_state().items()}
        arrivals = self.pool.train(orders, adapter, timeout_s=self.config.round_timeout_s)
        uploads = [upload for upload, _ in arrivals]
        loss = self.apply(uploads)

        clock_realtime = self.config.clock == "realtime"
        measured_s = (max(wall for _, wall in arrivals) / self.config.time_scale if clock_realtime
                      else max(upload.latency_s for upload in uploads))
        self.emulated_time_s += measured_s
        evaluation = None
        if round_idx % self.config.eval_every == 0 or round_idx == self.config.rounds:
            evaluation = self.evaluate()
        devices = {upload.device: {
            "blocks": list(upload.blocks), "bandwidth_hz": orders[upload.device].bandwidth_hz,
            "compute_s": upload.compute_s, "upload_s": upload.upload_s,
            "measured_compute_s": upload.measured_compute_s, "arrival_s": wall / (self.config.time_scale if clock_realtime else 1.0),
            "memory_need_bytes": upload.memory_need_bytes, "peak_memory_bytes": upload.peak_memory_bytes,
            "loss": upload.loss,
        } for upload, wall in arrivals}
        bottleneck = max(uploads, key=lambda u: u.latency_s).device
        record = RoundRecord(
            round=round_idx, emulated_time_s=self.emulated_time_s, wall_s=time.perf_counter() - wall_start,
            plan=plan.to_dict(), planned_latency_s=plan.round_latency_s, measured_latency_s=measured_s,
            devices=devices, bottleneck_device=bottleneck, loss=loss, evaluation=evaluation,
            events=tuple(self.pending_events))
        self.pending_events = []
        self.records.append(record)
        self.run_dir.append(record)
        return record

    # ------------------------------------------------------------------------------ steps
    def instance_for_round(self) -> Instance:
        """The planner's view of this round: the profile, and each device's compute scale, memory
        and channel (path loss, plus Rayleigh fading redrawn every round when configured)."""
        network = self.config.network
        noise = dbm_to_w(network.noise_dbm_per_hz)
        devices = []
        for spec in self.specs:
            gain = float(channel_gain(spec.distance_m, rayleigh=network.rayleigh_fading, rng=self.rng))
            if network.rate_model == "spectral_efficiency":
                snr = spec.tx_power_w * gain / (noise * network.bandwidth_hz / len(self.specs))
                channel = {"spectral_efficiency": float(np.log2(1.0 + snr))}
            else:
                channel = {"tx_power_w": spec.tx_power_w, "channel_gain": gain}
            devices.append(DeviceState(name=spec.name, compute_scale=spec.compute_scale,
                                       memory_bytes=spec.memory_budget_bytes, **channel))
        return Instance(bandwidth_hz=network.bandwidth_hz, blocks=self.profile, devices=tuple(devices),
                        noise_psd_w_per_hz=noise)

    def work_orders(self, instance: Instance, plan: Plan, round_idx: int) -> dict[str, WorkOrder]:
        names = instance.device_names
        bandwidth = np.array([plan.bandwidth_hz.get(name, 0.0) for name in names])
        rates = instance.channel().rate_bps(bandwidth)
        compute = instance.block_compute_s()
        orders = {}
        for name, blocks in plan.assignment.items():
            k = names.index(name)
            orders[name] = WorkOrder(round_idx=round_idx, blocks=tuple(blocks), bandwidth_hz=float(bandwidth[k]),
                                     rate_bps=float(rates[k]),
                                     planned_compute_s=float(instance.devices[k].compute_scale * compute[list(blocks)].max()))
        return orders

    def apply(self, uploads: Sequence[BlockUpload]) -> float:
        """Assemble the block gradients (each block exactly once) and step the optimizer.

        Returns the mean of the devices' losses.
        """
        import torch

        counts = np.zeros(self.model.num_blocks, dtype=int)
        for upload in uploads:
            counts[list(upload.blocks)] += 1
        if np.any(counts != 1):
            raise RoundError(f"round {uploads[0].round_idx}: block gradient counts {counts.tolist()}, "
                             "every block must arrive exactly once")
        parameters = self.model.named_trainable_parameters()
        self.optimizer.zero_grad(set_to_none=True)
        for upload in uploads:
            for name, gradient in upload.gradients.items():
                parameters[name].grad = torch.from_numpy(np.array(gradient)).to(parameters[name].device)
        if self.model.head_block is not None:  # head_with="server": the server trains the head itself
            head, _ = self.model.block_gradients([self.model.head_block], self.server_stream.next_batch())
            for name, gradient in head.items():
                parameters[name].grad = gradient
        missing = [name for name, p in parameters.items() if p.grad is None]
        assert not missing, f"no gradient for {missing[:3]}"
        self.optimizer.step()
        return float(np.mean([upload.loss for upload in uploads]))

    def evaluate(self) -> dict[str, float]:
        return evaluate_adapter(self.model, self.evaluation)

    def finish(self) -> dict[str, Any]:
        """Save the adapter with its head, the summary and the plots; return the summary."""
        self.model.save_adapter(str(self.run_dir.adapter_dir))
        summary = summarize(self.config, self.records)
        if hasattr(self.pool, "memory_usage"):  # device actors: each process's resident memory
            usage = self.pool.memory_usage()
            summary["device_memory"] = {
                "mean_uss_bytes": float(np.mean([u["uss_bytes"] for u in usage.values()])),
                "mean_rss_bytes": float(np.mean([u["rss_bytes"] for u in usage.values()])),
                "total_uss_bytes": float(sum(u["uss_bytes"] for u in usage.values()))}
        self.run_dir.write_summary(summary)
        self.run_dir.write_plots(self.evaluation.spec.metric_names[0])
        return summary


def evaluate_adapter(model: Any, evaluation: ValidationSet) -> dict[str, float]:
    """Score the model on the validation columns with the task's GLUE metrics."""
    import torch

    from deft_ray.data import compute_metrics

    columns = evaluation.columns
    outputs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # the devices wait while the server evaluates
    try:
        for start in range(0, len(columns["labels"]), EVAL_BATCH_SIZE):
            batch = {k: torch.from_numpy(np.ascontiguousarray(v[start:start + EVAL_BATCH_SIZE])) for k, v in columns.items()}
            outputs.append(model.evaluate_logits(batch).cpu().numpy())
    finally:
        torch.set_num_threads(threads)
    predictions = np.concatenate(outputs)
    if evaluation.spec.is_regression:
        predictions = predictions.reshape(-1)
    return compute_metrics(evaluation.spec, predictions, columns["labels"])


def summarize(config: RunConfig, records: Sequence[RoundRecord]) -> dict[str, Any]:
    """The run's summary: what ran, how long it took in emulated and wall time, where it ended."""
    evaluated = [r for r in records if r.evaluation]
    metric = None
    if evaluated:
        metric = next(iter(evaluated[-1].evaluation))
    return {
        "scheme": config.scheme, "task": config.data.task, "devices": config.num_devices,
        "rounds": len(records), "clock": config.clock,
        "emulated_time_s": records[-1].emulated_time_s if records else 0.0,
        "wall_s": float(sum(r.wall_s for r in records)),
        "mean_planned_latency_s": float(np.mean([r.planned_latency_s for r in records])) if records else None,
        "mean_measured_latency_s": float(np.mean([r.measured_latency_s for r in records])) if records else None,
        "final_loss": records[-1].loss if records else None,
        "final_evaluation": dict(evaluated[-1].evaluation) if evaluated else None,
        "best_" + (metric or "metric"): max(r.evaluation[metric] for r in evaluated) if evaluated else None,
        "events": sum(len(r.events) for r in records),
    }
