"""The coordinator: the one place where the round loop lives.

Each round (DESIGN.md, "The round, as data flows through it"): build the Instance from the devices'
current channels and the block profile, ask the planner for a Plan, publish the adapter once,
send every involved device its blocks, collect the uploads as they arrive, check that every block
came exactly once, assemble the gradients, step the optimizer, evaluate every few rounds and
append the round's record to the ledger.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from deft_ray.channel import channel_gain, dbm_to_w
from deft_ray.config import RunConfig
from deft_ray.actors.pool import DevicePool
from deft_ray.actors.validation import ValidationSet, evaluate_adapter
from deft_ray.errors import DeftRayError, InfeasibleError
from deft_ray.ledger import RunDirectory
from deft_ray.planners import BlockCost, DeviceState, Instance, Plan, get_scheme
from deft_ray.records import BlockUpload, DeviceSpec, RoundRecord, WorkOrder

class RoundError(DeftRayError):
    """A round could not complete.

    Example scenario: a device's upload did not arrive within ``round_timeout_s``.
    """

    exit_code = 1


class CoverageError(RoundError):
    """The devices still in the run cannot cover every block, so the run stops with a checkpoint.

    Example scenario: phones fail one by one until fewer devices than blocks are left under a
    one-block-per-device scheme, or none left holds the deepest block's memory.
    """


class PlannerLike(Protocol):
    def plan(self, instance: Instance, round_idx: int) -> Plan: ...


@dataclass
class _Phase:
    """One dispatch of a round and what the coordinator made of it."""

    plan: Plan
    accepted: list[BlockUpload]
    devices: dict[str, dict[str, Any]]
    lost_blocks: list[int]
    busy: set[str]
    """Devices not to be given more work this round (failed or still computing)."""
    elapsed_s: float
    """Emulated seconds from dispatch to the phase's end (virtual clock)."""


class Coordinator:
    """Drives the rounds of one run. Plain class; devices and the planner are reached through
    :class:`~deft_ray.actors.pool.DevicePool` and :class:`PlannerLike`, so it runs with Ray
    actors or in-process."""

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
        scheme = get_scheme(config.scheme)
        self.federated = scheme.replicates_blocks
        """Federated scheme: devices train the whole adapter locally and the server averages."""
        self.train_lora_a = scheme.trains_lora_a
        parameters = list(model.named_trainable_parameters().values())
        if config.optimizer.name == "adamw":
            self.optimizer = torch.optim.AdamW(parameters, lr=config.optimizer.lr,
                                               weight_decay=config.optimizer.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(parameters, lr=config.optimizer.lr,
                                             weight_decay=config.optimizer.weight_decay)
        self.emulated_time_s = 0.0
        self.next_round = 1
        self.pending_events = list(events)
        self.records: list[RoundRecord] = []
        self.summary: dict[str, Any] | None = None
        self._round_start_state: tuple[dict[str, Any], tuple[str, ...]] | None = None
        self._failed_this_round: set[str] = set()

    # ------------------------------------------------------------------------------ the loop
    def run(self) -> Iterator[RoundRecord]:
        """Run every round, yielding each record as it is written and checkpointing every
        ``reliability.checkpoint_every`` rounds; then save the adapter, summary and plots.

        Raises:
            CoverageError: the surviving devices cannot cover the blocks; a checkpoint of the last
                completed round is written first, the unfinished round's events go to
                ``stop.json``, and the message says how to resume.
        """
        every = self.config.reliability.checkpoint_every
        for round_idx in range(self.next_round, self.config.rounds + 1):
            try:
                record = self.run_round(round_idx)
            except CoverageError as error:
                path = self.checkpoint(round_idx - 1, at_round_start=True)
                self.run_dir.write_stop(round_idx, str(error), self._round_events)
                raise CoverageError(f"{error} The run stopped after round {round_idx - 1}"
                                    + (f"; checkpoint {path}. Resume with `deft-ray run --resume "
                                       f"{self.run_dir.root}` once devices are back (with "
                                       "`--on-device-failure restart` the failed ones are started again)"
                                       if path else "; there is no checkpoint of it (no round completed)")) from None
            yield record
            reached = self.meets_target(record.evaluation)
            if every and (round_idx % every == 0 or round_idx == self.config.rounds or reached):
                self.checkpoint(round_idx)
            if reached:
                break
        self.summary = self.finish()

    def meets_target(self, evaluation: Mapping[str, float] | None) -> bool:
        """Whether ``evaluation`` reaches ``target_metric`` (its first metric)."""
        target = self.config.target_metric
        return bool(target is not None and evaluation and next(iter(evaluation.values())) >= target)

    def run_round(self, round_idx: int) -> RoundRecord:
        """One round: plan, dispatch, recover lost blocks, apply, evaluate, record."""
        wall_start = time.perf_counter()
        self._round_start_state = (self.rng.bit_generator.state, tuple(spec.name for spec in self.specs))
        self._failed_this_round = set()
        events = self._round_events = self.pending_events
        self.pending_events = []
        instance = self.instance_for_round()
        plan = self._plan(instance, round_idx, what="the round")
        phase = self._dispatch(instance, plan, round_idx, events, exclude=set())
        phases = [phase]
        busy = set(phase.busy)
        while phases[-1].lost_blocks:
            lost = phases[-1].lost_blocks
            sub_instance = self._recovery_instance(instance, lost, busy)
            sub_plan = self._remap(self._plan(sub_instance, round_idx, what=f"lost blocks {lost}"), lost)
            events.append({"kind": "replanned", "blocks": lost, "assignment": {k: list(v) for k, v in sub_plan.assignment.items()},
                           "planned_latency_s": sub_plan.round_latency_s})
            phases.append(self._dispatch(instance, sub_plan, round_idx, events, exclude=busy))
            busy |= phases[-1].busy
        uploads = [upload for p in phases for upload in p.accepted]
        loss = self.apply(uploads)

        if self.config.clock == "realtime":
            measured_s = (time.perf_counter() - wall_start) / self.config.time_scale
        else:
            measured_s = sum(p.elapsed_s for p in phases)
        self.emulated_time_s += measured_s
        evaluation = None
        if round_idx % self.config.eval_every == 0 or round_idx == self.config.rounds:
            evaluation = self.evaluate()
            if self.meets_target(evaluation):
                events.append({"kind": "target_reached", "metric": next(iter(evaluation)),
                               "value": next(iter(evaluation.values())), "target": self.config.target_metric})
        bottleneck = max(uploads, key=lambda u: u.latency_s).device
        record = RoundRecord(
            round=round_idx, emulated_time_s=self.emulated_time_s, wall_s=time.perf_counter() - wall_start,
            plan=plan.to_dict(), planned_latency_s=plan.round_latency_s, measured_latency_s=measured_s,
            devices=phase.devices, bottleneck_device=bottleneck, loss=loss, evaluation=evaluation,
            events=tuple(events), blocks_applied=sum(len(u.blocks) for u in uploads),
            recovery=tuple({"plan": p.plan.to_dict(), "devices": p.devices} for p in phases[1:]))
        self.records.append(record)
        self.run_dir.append(record)
        self.next_round = round_idx + 1
        return record

    # ------------------------------------------------------------------------------ failures
    def _plan(self, instance: Instance, round_idx: int, *, what: str) -> Plan:
        try:
            return self.planner.plan(instance, round_idx)
        except InfeasibleError as error:
            raise CoverageError(f"round {round_idx}: the {instance.num_devices} devices left cannot cover "
                                f"{what} with scheme {self.config.scheme!r}: {error}.") from None

    def _dispatch(self, instance: Instance, plan: Plan, round_idx: int, events: list[dict[str, Any]], *,
                  exclude: set[str]) -> _Phase:
        """Send the plan's work orders, then sort what came back into accepted uploads, failed
        devices (handled per ``reliability.on_device_failure``) and stragglers, whose blocks are lost."""
        clock_realtime = self.config.clock == "realtime"
        scale = self.config.time_scale if clock_realtime else 1.0
        multiple = self.config.reliability.straggler_deadline
        deadline_s = plan.round_latency_s * multiple if multiple else None
        orders = self.work_orders(instance, plan, round_idx)
        assert not set(orders) & exclude, "a busy device got work"
        adapter = {name: value.numpy() for name, value in self.model.trainable_state().items()}
        dispatch = self.pool.train(orders, adapter, timeout_s=self.config.round_timeout_s,
                                   deadline_s=deadline_s * scale if deadline_s and clock_realtime else None)
        accepted, devices, lost, busy = [], {}, [], set()
        for upload, wall in dispatch.arrivals:
            late = deadline_s is not None and upload.latency_s > deadline_s * (1 + 1e-9)
            devices[upload.device] = {
                "blocks": list(upload.blocks), "bandwidth_hz": orders[upload.device].bandwidth_hz,
                "compute_s": upload.compute_s, "upload_s": upload.upload_s,
                "measured_compute_s": upload.measured_compute_s, "arrival_s": wall / scale,
                "memory_need_bytes": upload.memory_need_bytes, "peak_memory_bytes": upload.peak_memory_bytes,
                "loss": upload.loss, "status": "late" if late else "applied"}
            if late:
                lost.extend(upload.blocks)
                events.append({"kind": "straggler", "device": upload.device, "blocks": list(upload.blocks),
                               "latency_s": upload.latency_s, "deadline_s": deadline_s})
                busy.add(upload.device)
            else:
                accepted.append(upload)
        for name in dispatch.unfinished:
            order = orders[name]
            devices[name] = {"blocks": list(order.blocks), "bandwidth_hz": order.bandwidth_hz, "status": "late"}
            lost.extend(order.blocks)
            events.append({"kind": "straggler", "device": name, "blocks": list(order.blocks),
                           "latency_s": None, "deadline_s": deadline_s})
            busy.add(name)
        for name, reason in dispatch.failures.items():
            order = orders[name]
            devices[name] = {"blocks": list(order.blocks), "bandwidth_hz": order.bandwidth_hz, "status": "failed",
                             "error": reason}
            lost.extend(order.blocks)
            events.append({"kind": "device_failed", "device": name, "blocks": list(order.blocks), "error": reason})
            if not self._restart(name, events):
                busy.add(name)
        if self.federated and accepted:
            lost = []  # every device trains every block: the others' updates cover them
        latencies = [upload.latency_s for upload in accepted]
        elapsed_s = deadline_s if deadline_s is not None and busy - set(dispatch.failures) else max(latencies, default=0.0)
        return _Phase(plan=plan, accepted=accepted, devices=devices, lost_blocks=sorted(set(lost)), busy=busy,
                      elapsed_s=float(elapsed_s))

    def _restart(self, name: str, events: list[dict[str, Any]]) -> bool:
        """Restart a failed device when configured (True if it is back); otherwise, when the
        restart fails, or when it already failed once this round, drop it from the run."""
        again = name in self._failed_this_round
        self._failed_this_round.add(name)
        if self.config.reliability.on_device_failure == "restart" and not again:
            try:
                self.pool.restart(name)
            except Exception as error:  # noqa: BLE001 - a failed restart falls back to dropping the device
                events.append({"kind": "restart_failed", "device": name, "error": f"{type(error).__name__}: {error}"})
            else:
                events.append({"kind": "device_restarted", "device": name})
                return True
        self.remove_device(name)
        events.append({"kind": "device_removed", "device": name, "devices_left": len(self.specs)})
        return False

    def remove_device(self, name: str) -> None:
        """Take a device out of the run: the planner no longer sees it."""
        self.specs = [spec for spec in self.specs if spec.name != name]
        try:
            self.pool.remove(name)
        except Exception:  # noqa: BLE001 - it may already be gone with its process
            pass

    def _recovery_instance(self, instance: Instance, lost: list[int], busy: set[str]) -> Instance:
        """The sub-problem of the lost blocks on the devices still free this round (same channels)."""
        live = {spec.name for spec in self.specs} - busy
        devices = tuple(device for device in instance.devices if device.name in live)
        if not devices:
            raise CoverageError(f"no device is left to recompute blocks {lost}.")
        return dataclasses.replace(instance, blocks=tuple(instance.blocks[n] for n in lost), devices=devices)

    @staticmethod
    def _remap(plan: Plan, block_of: list[int]) -> Plan:
        """A sub-problem's plan with its block indices mapped back to the model's."""
        return dataclasses.replace(plan, assignment={name: tuple(block_of[n] for n in blocks)
                                                     for name, blocks in plan.assignment.items()})

    # ------------------------------------------------------------------------------ checkpoints
    def checkpoint(self, round_idx: int, *, at_round_start: bool = False) -> Path | None:
        """Write the checkpoint of the state after ``round_idx`` rounds (see :mod:`deft_ray.checkpoint`).

        ``at_round_start``: the current round failed; save the generator and devices as they were
        when it began, keeping an existing checkpoint of ``round_idx``. Returns the path (``None``
        when no round has completed).
        """
        from deft_ray.checkpoint import Checkpoint, checkpoint_path, save_checkpoint
        from deft_ray.config import to_dict

        if round_idx < 1:
            return None
        path = checkpoint_path(self.run_dir.checkpoints_dir, round_idx)
        if at_round_start and path.exists():
            return path
        rng_state, live = ((self.rng.bit_generator.state, tuple(spec.name for spec in self.specs))
                           if not at_round_start or self._round_start_state is None else self._round_start_state)
        return save_checkpoint(self.run_dir.checkpoints_dir, Checkpoint(
            round_idx=round_idx, adapter=self.model.trainable_state(), optimizer=self.optimizer.state_dict(),
            coordinator_rng=rng_state, device_streams=self.pool.stream_states(),
            server_stream=self.server_stream.state_dict() if self.server_stream is not None else None,
            emulated_time_s=self.emulated_time_s, live_devices=live,
            ledger_bytes=self.run_dir.metrics_path.stat().st_size, config=to_dict(self.config)))

    def restore(self, checkpoint: Any, path: Path) -> None:
        """Continue from ``checkpoint``: adapter, optimizer, generators, devices, emulated time,
        and the ledger cut back to the checkpoint's round (later lines move to
        ``metrics.discarded.jsonl``)."""
        from deft_ray.checkpoint import CheckpointError

        try:
            self.model.load_trainable_state(checkpoint.adapter)
            self.optimizer.load_state_dict(dict(checkpoint.optimizer))
        except (DeftRayError, ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint {path} does not fit this model ({error}); resume with the "
                                  "run's own config.yaml") from None
        self.rng.bit_generator.state = dict(checkpoint.coordinator_rng)
        if checkpoint.server_stream is not None and self.server_stream is not None:
            self.server_stream.load_state_dict(dict(checkpoint.server_stream))
        for name in [spec.name for spec in self.specs if spec.name not in checkpoint.live_devices]:
            if self.config.reliability.on_device_failure == "restart":
                self.pending_events.append({"kind": "device_restarted", "device": name, "detail": "on resume"})
            else:
                self.remove_device(name)
        self.pool.load_stream_states({name: state for name, state in checkpoint.device_streams.items()
                                      if name in {spec.name for spec in self.specs}})
        self.emulated_time_s = float(checkpoint.emulated_time_s)
        self.records = [RoundRecord.from_dict(line) for line in self.run_dir.cut_ledger(checkpoint.ledger_bytes)]
        if len(self.records) != checkpoint.round_idx:
            raise CheckpointError(f"checkpoint {path} is of round {checkpoint.round_idx} but the ledger holds "
                                  f"{len(self.records)} rounds before it; the run directory was altered")
        self.next_round = checkpoint.round_idx + 1
        self.pending_events.append({"kind": "resumed", "checkpoint": str(path), "after_round": checkpoint.round_idx,
                                    "devices_left": len(self.specs)})

    # ------------------------------------------------------------------------------ steps
    def instance_for_round(self) -> Instance:
        """The planner's view of this round (see :func:`round_instance`)."""
        return round_instance(self.config, self.specs, self.profile, self.rng)

    def work_orders(self, instance: Instance, plan: Plan, round_idx: int) -> dict[str, WorkOrder]:
        names = instance.device_names
        bandwidth = np.array([plan.bandwidth_hz.get(name, 0.0) for name in names])
        rates = instance.channel().rate_bps(bandwidth)
        compute = instance.block_compute_s()
        steps = self.config.federated.local_steps if self.federated else 0
        orders = {}
        for name, blocks in plan.assignment.items():
            k = names.index(name)
            compute_s = instance.devices[k].compute_scale * compute[list(blocks)].max() * max(steps, 1)
            orders[name] = WorkOrder(round_idx=round_idx, blocks=tuple(blocks), bandwidth_hz=float(bandwidth[k]),
                                     rate_bps=float(rates[k]), planned_compute_s=float(compute_s),
                                     local_steps=steps, train_lora_a=self.train_lora_a)
        return orders

    def apply(self, uploads: Sequence[BlockUpload]) -> float:
        """Assemble the block gradients (each block exactly once) and step the optimizer; or, for a
        federated scheme, add the mean of the devices' adapter changes (FedAvg).

        Returns the mean of the devices' losses.
        """
        import torch

        if self.federated:
            return self.average(uploads)
        counts = np.zeros(self.model.num_blocks, dtype=int)
        for upload in uploads:
            counts[list(upload.blocks)] += 1
        if np.any(counts != 1):
            raise RoundError(f"round {uploads[0].round_idx}: block gradient counts {counts.tolist()}, "
                             "every block must arrive exactly once")
        parameters = self.model.named_trainable_parameters()
        self.optimizer.zero_grad(set_to_none=True)
        for upload in uploads:
            for name, gradient in upload.tensors.items():
                parameters[name].grad = torch.from_numpy(np.array(gradient)).to(parameters[name].device)
        if self.model.head_block is not None:  # head_with="server": the server trains the head itself
            head, _ = self.model.block_gradients([self.model.head_block], self.server_stream.next_batch())
            for name, gradient in head.items():
                parameters[name].grad = gradient
        missing = [name for name, p in parameters.items() if p.grad is None]
        assert not missing, f"no gradient for {missing[:3]}"
        self.optimizer.step()
        return float(np.mean([upload.loss for upload in uploads]))

    def average(self, uploads: Sequence[BlockUpload]) -> float:
        """FedAvg with equal weights (the partitions are equal in size): every parameter the devices
        trained moves by the mean of their changes; the others (FFA-LoRA's A) stay."""
        import torch

        if not uploads:
            raise RoundError("a federated round ended with no device update")
        parameters = self.model.named_trainable_parameters()
        with torch.no_grad():
            for name in uploads[0].tensors:
                mean = np.mean([upload.tensors[name] for upload in uploads], axis=0)
                parameters[name].add_(torch.from_numpy(mean).to(parameters[name].device))
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


def round_instance(config: RunConfig, specs: Sequence[DeviceSpec], profile: Sequence[BlockCost],
                   rng: np.random.Generator | None) -> Instance:
    """A round's Instance: the profile, and each device's compute scale, memory and channel (path
    loss, times Rayleigh fading drawn from ``rng`` when the config asks for it)."""
    network = config.network
    noise = dbm_to_w(network.noise_dbm_per_hz)
    devices = []
    for spec in specs:
        gain = float(channel_gain(spec.distance_m, rayleigh=network.rayleigh_fading, rng=rng))
        if network.rate_model == "spectral_efficiency":
            snr = spec.tx_power_w * gain / (noise * network.bandwidth_hz / len(specs))
            channel = {"spectral_efficiency": float(np.log2(1.0 + snr))}
        else:
            channel = {"tx_power_w": spec.tx_power_w, "channel_gain": gain}
        devices.append(DeviceState(name=spec.name, compute_scale=spec.compute_scale,
                                   memory_bytes=spec.memory_budget_bytes, **channel))
    return Instance(bandwidth_hz=network.bandwidth_hz, blocks=tuple(profile), devices=tuple(devices),
                    noise_psd_w_per_hz=noise)


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
