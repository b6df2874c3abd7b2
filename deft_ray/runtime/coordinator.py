"""The coordinator: the one place where the round loop lives.

Each round reads top to bottom as plan, dispatch, recover, apply, evaluate, record
(docs/architecture.md, "The round"). What differs between schemes is the round kind
(:mod:`deft_ray.runtime.round_kinds`); what to do with failed and late devices is the recovery
policy (:mod:`deft_ray.runtime.recovery`); checkpoints are written and restored by
:mod:`deft_ray.runtime.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from deft_ray.config import RunConfig
from deft_ray.edge.clock import Clock
from deft_ray.edge.devices import DeviceSpec
from deft_ray.edge.dynamics import EdgeDynamics
from deft_ray.edge.instances import round_instance
from deft_ray.errors import DeftRayError, InfeasibleError
from deft_ray.learning.validation import ValidationSet, evaluate_adapter
from deft_ray.planners import BlockCost, Instance, Plan
from deft_ray.runtime.dispatch import DevicePool, PlannerLike
from deft_ray.runtime.ledger import RunDirectory
from deft_ray.runtime.divergence import DivergenceError, DivergenceGuard
from deft_ray.runtime.plan_ahead import AheadPlan, PlanAhead
from deft_ray.runtime.records import (BlockUpload, DeviceRound, DeviceStatus, Event, EventKind, Phase, RoundRecord,
                                      RunInterrupted, RunSummary, RunWarning)
from deft_ray.runtime.recovery import CoverageError, FailureDecision, RecoveryPolicy
from deft_ray.runtime.round_kinds import RoundKind, restore_upload
from deft_ray.runtime.waiting import OnlinePlan, plan_when_online


@dataclass(frozen=True, slots=True)
class _PhaseOutcome:
    """One dispatch of a round and what the coordinator made of it."""

    phase: Phase
    accepted: tuple[BlockUpload, ...]
    lost_blocks: tuple[int, ...]
    busy: frozenset[str]
    """Devices not to be given more work this round (failed or still computing)."""
    elapsed_s: float
    """Emulated seconds from dispatch to the phase's end (virtual clock)."""


class Coordinator:
    """Drives the rounds of one run. Plain class: devices and the planner are reached through a
    :class:`~deft_ray.runtime.dispatch.DevicePool` and a planner, so it runs with Ray actors or
    in-process."""

    def __init__(self, *, config: RunConfig, model: Any, profile: Sequence[BlockCost], specs: Sequence[DeviceSpec],
                 pool: DevicePool, planner: PlannerLike, round_kind: RoundKind, evaluation: ValidationSet,
                 run_dir: RunDirectory, events: Sequence[Event] = (), server_stream: Any = None):
        self.config = config
        self.model = model
        self.profile = tuple(profile)
        self.specs = list(specs)
        self.pool = pool
        self.planner = planner
        self.round_kind = round_kind
        self.policy = RecoveryPolicy(on_device_failure=config.reliability.on_device_failure,
                                     straggler_deadline=config.reliability.straggler_deadline)
        self.evaluation = evaluation
        self.run_dir = run_dir
        self.server_stream = server_stream
        """Batches for the head when it is trained at the server (``head_with: server``)."""
        self.rng = np.random.default_rng(config.seed)
        self.edge = EdgeDynamics(config, specs)
        """Every device's channel (shadowing, mobility, trace) and availability over emulated time."""
        self.clock = Clock(config.clock, config.time_scale)
        self.plan_ahead = (PlanAhead(self.edge, self.rng, self._instance_at)
                           if config.clock == "virtual" and config.runtime.plan_ahead else None)
        """Plans the next round while this round's devices compute (:mod:`~deft_ray.runtime.plan_ahead`)."""
        self.round_start_s = 0.0
        """Emulated time at which the current round's first phase began (after any wait)."""
        self.optimizer = config.optimizer.build(list(model.named_trainable_parameters().values()))
        self.schedule = config.optimizer.build_schedule(self.optimizer, total_steps=config.rounds)
        self.guard = DivergenceGuard(max_loss_growth=config.reliability.max_loss_growth, lr=config.optimizer.lr)
        self.stop_requested = threading.Event()
        """Set from outside (a signal at the driver): stop after the round in flight."""
        self.interrupted: RunInterrupted | None = None
        """Set when the run stopped on :attr:`stop_requested` before its last round."""
        self.emulated_time_s = 0.0
        self.next_round = 1
        self.pending_events: list[Event] = list(events)
        self.records: list[RoundRecord] = []
        self.summary: RunSummary | None = None
        self.round_start_state: tuple[dict[str, Any], tuple[str, ...], dict[str, Any]] | None = None
        """The generator state, live devices and edge state when the current round began (for a
        checkpoint of the last completed round when this one fails)."""
        self.round_events: list[Event] = []
        self._failed_this_round: set[str] = set()
        self.tensors_per_block = tuple(len(model.block_parameter_names(n)) for n in range(len(self.profile)))
        """Tensors each block uploads: an int8 upload carries a scale per tensor."""

    # ------------------------------------------------------------------------------ the run
    def run(self) -> Iterator[RoundRecord | RunWarning]:
        """Run every round, yielding each record as it is written, checkpointing every
        ``reliability.checkpoint_every`` rounds; then save the adapter, summary and plots.

        A checkpoint that cannot be written is a ``checkpoint_failed`` event and a
        :class:`RunWarning`; the run goes on. When :attr:`stop_requested` is set, the run stops
        after the round in flight with a checkpoint of it and sets :attr:`interrupted`.

        Raises:
            CoverageError: the surviving devices cannot cover the blocks.
            DivergenceError: the training loss or a gradient is not finite, or the loss grew past
                ``reliability.max_loss_growth``.
            Either way a checkpoint of the last completed round is written first, the unfinished
            round's events go to ``stop.json``, and the message says what to do.
        """
        every, reached = self.config.reliability.checkpoint_every, False
        for round_idx in range(self.next_round, self.config.rounds + 1):
            if self.stop_requested.is_set():
                break
            try:
                record = self.run_round(round_idx)
            except (CoverageError, DivergenceError) as error:
                raise self._stopped(error, round_idx) from None
            yield record
            if record.waited_s > 0:
                yield RunWarning(f"round {round_idx} waited {record.waited_s:.1f} emulated s for enough devices to "
                                 "come online to cover the blocks")
            reached = self.meets_target(record)
            last = round_idx == self.config.rounds or reached
            if (every and (round_idx % every == 0 or last)) or (self.stop_requested.is_set() and not last):
                yield from self._checkpoint(round_idx)
            if reached:
                break
        if self.stop_requested.is_set() and self.rounds_done < self.config.rounds and not reached:
            from deft_ray.runtime.checkpoint import checkpoint_path

            path = checkpoint_path(self.run_dir.checkpoints_dir, self.rounds_done)
            self.interrupted = RunInterrupted(self.rounds_done, str(path) if path.is_file() else None)
            return
        self.summary = self.finish()

    def _checkpoint(self, round_idx: int) -> Iterator[RunWarning]:
        from deft_ray.runtime.checkpoint import save_run_checkpoint

        try:
            save_run_checkpoint(self, round_idx)
        except OSError as error:
            reason = f"{error.strerror or error}: {error.filename}" if error.filename else str(error.strerror or error)
            self.pending_events.append(Event(kind=EventKind.CHECKPOINT_FAILED, detail=f"round {round_idx}",
                                             error=reason))
            yield RunWarning(f"the checkpoint of round {round_idx} could not be written ({reason}); the run goes on, "
                             "and a resume would start from the checkpoint before it")

    def _stopped(self, error: DeftRayError, round_idx: int) -> DeftRayError:
        """``error`` with what was kept: a checkpoint of the last completed round, and ``stop.json``."""
        from deft_ray.runtime.checkpoint import save_run_checkpoint

        try:
            path = save_run_checkpoint(self, round_idx - 1, at_round_start=True)
        except OSError as write_error:
            path, kept = None, f"; its checkpoint could not be written ({write_error.strerror})"
        else:
            kept = f"; checkpoint {path}" if path else "; there is no checkpoint of it (no round completed)"
        self.run_dir.write_stop(round_idx, str(error), self.round_events)
        message = f"{error} The run stopped after round {round_idx - 1}{kept}"
        if isinstance(error, CoverageError) and path:
            message += (f". Resume with `deft-ray run --resume {self.run_dir.root}` once devices are back (with "
                        "`--on-device-failure restart` the failed ones are started again)")
        return type(error)(message)

    def meets_target(self, record: RoundRecord) -> bool:
        """Whether the round's evaluation reaches ``target_metric`` (its primary metric, in the
        metric's direction: at or above it, or at or below it for eval loss and perplexity)."""
        from deft_ray.learning.metrics import reaches

        target, value = self.config.target_metric, record.primary_metric
        return target is not None and value is not None and reaches(next(iter(record.evaluation)), value, target)

    # ------------------------------------------------------------------------------ the round
    def run_round(self, round_idx: int) -> RoundRecord:
        """One round: plan, dispatch, recover lost blocks, apply, evaluate, record."""
        wall_start = time.perf_counter()
        self.round_start_state = (self.rng.bit_generator.state, tuple(spec.name for spec in self.specs),
                                  self.edge.state_dict())
        self._failed_this_round = set()
        events = self.round_events = self.pending_events
        self.pending_events = []

        candidates = [spec.name for spec in self.specs]
        ahead = self.plan_ahead.take(round_idx, self.emulated_time_s, candidates) if self.plan_ahead else None
        planned = (self._planned_ahead(ahead, events) if ahead else
                   self._plan_online(candidates, self._instance_at, round_idx, events, at_s=self.emulated_time_s,
                                     what="the round"))
        self.emulated_time_s += planned.waited_s
        self.round_start_s = self.emulated_time_s
        instance, plan = planned.instance, planned.plan
        if self.plan_ahead and round_idx < self.config.rounds:  # solved while this round's devices compute
            self.plan_ahead.start(self.planner, round_idx + 1, self.round_start_s + plan.round_latency_s, candidates)
        outcomes = [self._dispatch(instance, plan, round_idx, events, busy=frozenset(), start_s=0.0)]
        while outcomes[-1].lost_blocks:
            outcomes.append(self._recover(instance, outcomes, round_idx, events))
        uploads = [restore_upload(upload) for outcome in outcomes for upload in outcome.accepted]
        self.guard.check(round_idx, uploads)
        server_batch = self.server_stream.next_batch() if self.model.head_block is not None else None
        loss = self.round_kind.apply(self.model, self.optimizer, uploads, server_batch)
        if self.round_kind.steps_server_optimizer:
            self.schedule.step()

        if self.config.clock == "realtime":
            measured_s = (time.perf_counter() - wall_start) / self.config.time_scale - planned.waited_s
        else:
            measured_s = sum(outcome.elapsed_s for outcome in outcomes)
        self.emulated_time_s += measured_s
        evaluation = None
        if round_idx % self.config.eval_every == 0 or round_idx == self.config.rounds:
            evaluation = evaluate_adapter(self.model, self.evaluation)
        record = RoundRecord(
            round_idx=round_idx, emulated_time_s=self.emulated_time_s, wall_s=time.perf_counter() - wall_start,
            plan=plan, planned_latency_s=plan.round_latency_s, measured_latency_s=measured_s,
            devices=outcomes[0].phase.devices, bottleneck_device=max(uploads, key=lambda u: u.latency_s).device,
            loss=loss, evaluation=evaluation, events=(), blocks_applied=sum(len(u.blocks) for u in uploads),
            recovery=tuple(outcome.phase for outcome in outcomes[1:]),
            online=tuple(device.name for device in instance.devices), waited_s=planned.waited_s,
            planned_ahead=ahead is not None,
            # fsum: the same total whatever order the uploads arrived in
            energy_j=math.fsum(d.energy_j or 0.0 for o in outcomes for d in o.phase.devices.values()))
        if self.meets_target(record):
            events.append(Event(kind=EventKind.TARGET_REACHED, metric=next(iter(evaluation)),
                                value=record.primary_metric, target=self.config.target_metric))
        record = dataclasses.replace(record, events=tuple(events))
        self.records.append(record)
        self.run_dir.append(record)
        self.next_round = round_idx + 1
        return record

    # ------------------------------------------------------------------------------ its steps
    def instance_for_round(self, names: Sequence[str] | None = None, round_idx: int | None = None) -> Instance:
        """The planner's view of round ``round_idx`` (default: the next): the channels of the
        live devices (of ``names``) as the edge is now, with fading drawn from the run's generator."""
        specs = [spec for spec in self.specs if names is None or spec.name in names]
        gains = self.edge.gains([spec.name for spec in specs], round_idx or self.next_round, self.rng)
        return round_instance(self.config, specs, self.profile, self.rng, gains=gains,
                              tensors_per_block=self.tensors_per_block)

    def _instance_at(self, time_s: float, names: Sequence[str], round_idx: int | None = None) -> Instance:
        self.edge.advance_to(time_s)
        return self.instance_for_round(names, round_idx)

    def _plan_online(self, candidates: Sequence[str], instance_of, round_idx: int, events: list[Event], *,
                     at_s: float, what: str) -> OnlinePlan:
        """Plan ``what`` on the candidates online at ``at_s``, waiting (emulated time; realtime: it
        really passes) for more to come online while they cannot cover it (:mod:`~deft_ray.runtime.waiting`)."""
        def covers(instance: Instance) -> bool:
            try:
                self.planner.plan_round(instance, round_idx)
            except InfeasibleError:
                return False
            return True

        try:
            planned = plan_when_online(candidates, self.edge.availability, at_s=at_s, instance_of=instance_of,
                                       plan=lambda instance: self._plan(instance, round_idx, events, what=what),
                                       covers=covers)
        except CoverageError as error:
            raise (error if str(error).startswith("round ") else CoverageError(f"round {round_idx}: {what}: {error}"))
        if planned.waited_s > 0:
            self.clock.elapse(planned.waited_s)
            events.append(Event(kind=EventKind.WAITED, detail=f"{what}: {len(planned.offline)} of {len(candidates)} "
                                f"devices offline ({', '.join(planned.offline)})", waited_s=planned.waited_s,
                                devices_left=planned.instance.num_devices))
        return planned

    def _plan(self, instance: Instance, round_idx: int, events: list[Event], *, what: str) -> Plan:
        try:
            planned = self.planner.plan_round(instance, round_idx)
        except InfeasibleError as error:
            raise CoverageError(f"round {round_idx}: the {instance.num_devices} devices left cannot cover "
                                f"{what} with scheme {self.config.scheme!r}: {error}.") from None
        return self._warned(planned, events)

    def _planned_ahead(self, ahead: AheadPlan, events: list[Event]) -> OnlinePlan:
        """The round's plan, made while the last round's devices computed (no wait: all it needed was online)."""
        return OnlinePlan(ahead.instance, self._warned(ahead.planned, events), 0.0, ahead.offline)

    @staticmethod
    def _warned(planned: Any, events: list[Event]) -> Plan:
        """A :class:`~deft_ray.actors.planner.PlannedRound`'s plan; its warnings become events."""
        events.extend(Event(kind=EventKind.PLANNER_WARNING, detail=warning) for warning in planned.warnings)
        return planned.plan

    def _dispatch(self, instance: Instance, plan: Plan, round_idx: int, events: list[Event], *,
                  busy: frozenset[str], start_s: float) -> _PhaseOutcome:
        """Send the plan's work orders, then sort what came back into accepted uploads, failed
        devices (handled by the recovery policy), devices that went offline before their upload
        arrived (``start_s``: the phase's start in the round) and stragglers, whose blocks are lost."""
        realtime = self.config.clock == "realtime"
        scale = self.config.time_scale if realtime else 1.0
        deadline_s = self.policy.deadline_s(plan.round_latency_s)
        orders = self.round_kind.work_orders(instance, plan, round_idx)
        assert not set(orders) & busy, "a busy device got work"
        adapter = {name: value.numpy() for name, value in self.model.trainable_state().items()}
        dispatch = self.pool.train(orders, adapter, timeout_s=self.config.round_timeout_s,
                                   deadline_s=deadline_s * scale if deadline_s and realtime else None)
        accepted, devices, lost, newly_busy, dropped_s = [], {}, [], set(), {}
        for arrival in dispatch.arrivals:
            upload = arrival.upload
            away_s = self.edge.availability.offline_after_s(upload.device, self.round_start_s + start_s,
                                                            upload.latency_s)
            if away_s is not None:  # offline before its upload arrived
                order, dropped_s[upload.device] = orders[upload.device], away_s
                reason = f"went offline {away_s:.3f} s into the phase, before its upload arrived"
                devices[upload.device] = DeviceRound(blocks=order.blocks, bandwidth_hz=order.bandwidth_hz,
                                                     status=DeviceStatus.FAILED, error=reason)
                lost.extend(order.blocks)
                events.append(Event(kind=EventKind.DEVICE_FAILED, device=upload.device, blocks=order.blocks,
                                    error=reason))
                newly_busy.add(upload.device)  # it stays in the run, to come back online later
                continue
            late = self.policy.is_late(upload.latency_s, deadline_s)
            devices[upload.device] = DeviceRound.of_upload(upload, orders[upload.device], arrival_s=arrival.wall_s / scale,
                                                           late=late)
            if late:
                lost.extend(upload.blocks)
                events.append(Event(kind=EventKind.STRAGGLER, device=upload.device, blocks=upload.blocks,
                                    latency_s=upload.latency_s, deadline_s=deadline_s))
                newly_busy.add(upload.device)
            else:
                accepted.append(upload)
        for name in dispatch.unfinished:
            order = orders[name]
            devices[name] = DeviceRound(blocks=order.blocks, bandwidth_hz=order.bandwidth_hz, status=DeviceStatus.LATE)
            lost.extend(order.blocks)
            events.append(Event(kind=EventKind.STRAGGLER, device=name, blocks=order.blocks, deadline_s=deadline_s))
            newly_busy.add(name)
        for name, reason in dispatch.failures.items():
            order = orders[name]
            devices[name] = DeviceRound(blocks=order.blocks, bandwidth_hz=order.bandwidth_hz, status=DeviceStatus.FAILED,
                                        error=reason)
            lost.extend(order.blocks)
            events.append(Event(kind=EventKind.DEVICE_FAILED, device=name, blocks=order.blocks, error=reason))
            if not self._handle_failure(name, events):
                newly_busy.add(name)
        stalled = newly_busy - set(dispatch.failures) - set(dropped_s)
        elapsed_s = (deadline_s if deadline_s is not None and stalled
                     else max([u.latency_s for u in accepted] + list(dropped_s.values()), default=0.0))
        return _PhaseOutcome(phase=Phase(plan=plan, devices=devices), accepted=tuple(accepted),
                             lost_blocks=tuple(self.round_kind.uncovered(lost, accepted)),
                             busy=busy | newly_busy, elapsed_s=float(elapsed_s))

    def _recover(self, instance: Instance, outcomes: list[_PhaseOutcome], round_idx: int,
                 events: list[Event]) -> _PhaseOutcome:
        """Re-plan the last phase's lost blocks on the devices still free (same channels) and
        dispatch them."""
        lost, busy = list(outcomes[-1].lost_blocks), outcomes[-1].busy
        live = {spec.name for spec in self.specs} - busy
        free = [device.name for device in instance.devices if device.name in live]
        if not free:
            raise CoverageError(f"no device is left to recompute blocks {lost}.")

        def sub_instance(_: float, names: Sequence[str]) -> Instance:
            return dataclasses.replace(instance, blocks=tuple(instance.blocks[n] for n in lost),
                                       devices=tuple(device for device in instance.devices if device.name in names))

        start_s = sum(outcome.elapsed_s for outcome in outcomes)
        planned = self._plan_online(free, sub_instance, round_idx, events, at_s=self.round_start_s + start_s,
                                    what=f"lost blocks {lost}")
        sub_plan = dataclasses.replace(planned.plan, assignment={name: tuple(lost[n] for n in blocks)
                                                                 for name, blocks in planned.plan.assignment.items()})
        events.append(Event(kind=EventKind.REPLANNED, blocks=tuple(lost), assignment=dict(sub_plan.assignment),
                            planned_latency_s=sub_plan.round_latency_s))
        outcome = self._dispatch(instance, sub_plan, round_idx, events, busy=busy, start_s=start_s + planned.waited_s)
        return dataclasses.replace(outcome, elapsed_s=outcome.elapsed_s + planned.waited_s)

    def _handle_failure(self, name: str, events: list[Event]) -> bool:
        """Restart or drop a failed device as the policy decides; True if it is back."""
        decision = self.policy.on_failure(failed_before_this_round=name in self._failed_this_round)
        self._failed_this_round.add(name)
        if decision is FailureDecision.RESTART:
            try:
                self.pool.restart(name)
            except Exception as error:  # noqa: BLE001 - a failed restart falls back to dropping the device
                events.append(Event(kind=EventKind.RESTART_FAILED, device=name, error=f"{type(error).__name__}: {error}"))
            else:
                events.append(Event(kind=EventKind.DEVICE_RESTARTED, device=name))
                return True
        self.remove_device(name)
        events.append(Event(kind=EventKind.DEVICE_REMOVED, device=name, devices_left=len(self.specs)))
        return False

    def remove_device(self, name: str) -> None:
        """Take a device out of the run: the planner no longer sees it."""
        self.specs = [spec for spec in self.specs if spec.name != name]
        try:
            self.pool.remove(name)
        except Exception:  # noqa: BLE001 - it may already be gone with its process
            pass

    # ------------------------------------------------------------------------------ the end
    def finish(self) -> RunSummary:
        """Save the adapter with its head, the summary and the plots; return the summary."""
        from deft_ray.runtime.summary import summarize

        self.model.save_adapter(str(self.run_dir.adapter_dir))
        summary = summarize(self.config, self.records, self.pool.memory_usage(),
                            metric=self.evaluation.metric_names[0])
        self.run_dir.write_summary(summary)
        self.run_dir.write_plots(summary.metric)
        return summary

    @property
    def rounds_done(self) -> int:
        """Rounds completed so far (a resumed run starts at its checkpoint's round)."""
        return self.next_round - 1
