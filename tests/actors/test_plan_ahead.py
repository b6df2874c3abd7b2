"""Planning the next round while this one computes: the run it gives is the run without it."""

from __future__ import annotations

import os
import sys
import threading

from deft_ray.actors.launch import build_local
from deft_ray.runtime.ledger import RunDirectory, seeded_fields
from tests.actors.test_faults import check_every_block_once, ledger
from tests.actors.test_living_edge import living, payload_profile


def test_planning_ahead_leaves_a_living_run_as_it_was(tiny_bert, tmp_path, tiny_config):
    """Fading, shadowing, mobility and devices going offline mid-round: every round planned ahead
    is taken only when the round begins as it was planned for, so both runs are one run."""
    runs = {}
    for ahead in (True, False):
        config = living(tiny_config, tiny_bert, tmp_path, rounds=12, reliability={"checkpoint_every": 0},
                        runtime={"plan_ahead": ahead}, profile=payload_profile(tiny_bert, tmp_path))
        coordinator = build_local(config, RunDirectory(tmp_path / str(ahead)))
        list(coordinator.run())
        runs[ahead] = (ledger(tmp_path / str(ahead)), coordinator)
    (lines, whole), (plain, alone) = runs[True], runs[False]
    check_every_block_once(lines)
    assert [seeded_fields(line) for line in lines] == [seeded_fields(line) for line in plain]
    assert [e["kind"] for line in lines for e in line["events"]] == [e["kind"] for line in plain for e in line["events"]]
    assert whole.edge.state_dict() == alone.edge.state_dict() and whole.rng.bit_generator.state == alone.rng.bit_generator.state
    assert not any(line["planned_ahead"] for line in plain)
    ahead = [line["planned_ahead"] for line in lines]
    assert not ahead[0] and any(ahead)
    for before, line in zip(lines, lines[1:]):
        ended_as_planned = not before["recovery"] and before["measured_latency_s"] == before["planned_latency_s"]
        if not ended_as_planned:  # a recovery moved the round's end: its successor planned afresh
            assert not line["planned_ahead"]
    assert not all(ahead[1:]), "no round ended off its plan: the fallback went untested"


def test_a_round_planned_ahead_is_dropped_when_the_generator_moved_since(tiny_bert, tmp_path, tiny_config):
    config = living(tiny_config, tiny_bert, tmp_path, rounds=3, reliability={"checkpoint_every": 0},
                    profile=payload_profile(tiny_bert, tmp_path))
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    coordinator.run_round(1)
    coordinator.rng.random()  # anything else that draws between rounds
    assert not coordinator.run_round(2).planned_ahead
    assert coordinator.run_round(3).planned_ahead


def test_under_the_realtime_clock_nothing_is_planned_ahead(tiny_bert, tmp_path, tiny_config):
    config = tiny_config(tiny_bert, rounds=2, clock="realtime", time_scale=0.01, reliability={"checkpoint_every": 0})
    coordinator = build_local(config, RunDirectory(tmp_path / "run"))
    list(coordinator.run())
    assert coordinator.plan_ahead is None and not any(line["planned_ahead"] for line in ledger(tmp_path / "run"))


def test_the_plan_made_ahead_is_the_plan_on_a_lowest_priority_thread(tiny_bert, tmp_path, tiny_config):
    from deft_ray.actors.planner import Planner
    from deft_ray.planners.jbba import Jbba

    priorities = []

    class Watched(Jbba):
        def allocate(self, instance, *, seed):
            priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super().allocate(instance, seed=seed)

    coordinator = build_local(tiny_config(tiny_bert, rounds=1), RunDirectory(tmp_path / "run"))
    instance = coordinator.instance_for_round()
    planner = Planner(Watched(), seed=4)
    now = planner.plan_round(instance, 3)
    ahead = planner.plan_round_ahead(instance, 3)
    assert ahead.plan.assignment == now.plan.assignment and ahead.plan.bandwidth_hz == now.plan.bandwidth_hz
    assert priorities[0] == os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if sys.platform.startswith("linux"):
        assert priorities[1] == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == priorities[0]  # the caller's is its own


def test_ray_rounds_after_the_first_are_planned_ahead(tiny_bert, tmp_path, ray_local, tiny_config):
    from deft_ray.runner import run

    config = tiny_config(tiny_bert, rounds=4, reliability={"checkpoint_every": 0})
    run(config, out_dir=tmp_path / "run", use_ray=True, quiet=True)
    lines = ledger(tmp_path / "run")
    check_every_block_once(lines)
    assert [line["planned_ahead"] for line in lines] == [False, True, True, True]
