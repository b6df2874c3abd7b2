"""Does a run survive devices that die mid-round? (issue: reliability)

Runs the default job with 8 devices for 20 rounds on Ray (packaged MiniLM and its packaged CPU
profile, so that every run plans alike, virtual clock) and,
every 5 rounds, kills one device's process from outside with SIGKILL, by its process id, while
it computes (a device drawn at random among those with work that round). Two policies are run, each beside a fault-free run with the same seed:

- jbba with ``on_device_failure: restart``: the dead device's blocks are re-planned within the
  round and a fresh actor takes its place;
- multiblock with ``on_device_failure: replan``: the device is dropped and the survivors take
  its blocks (several per device once fewer devices than blocks are left).

Prints, per run, the rounds completed, the blocks applied in every round (always the number of
blocks), the events recorded and the final metric against the fault-free run.

    python benchmarks/faults.py [--rounds 20] [--devices 8] [--kill-every 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runtime.ledger import RunDirectory
from deft_ray.runner import resize_population


def make_config(args: argparse.Namespace, scheme: str, policy: str) -> RunConfig:
    data = to_dict(RunConfig())
    data.update(rounds=args.rounds, scheme=scheme, eval_every=5, seed=args.seed, profile="minilm-l6_cpu_fp32",
                reliability={"on_device_failure": policy, "checkpoint_every": 0, "straggler_deadline": None})
    return resize_population(config_from_dict(data), args.devices)


def kill_later(pid: int, delay_s: float, killed: list[int]) -> threading.Timer:
    """SIGKILL ``pid`` after ``delay_s`` seconds, from this (outside) process."""
    def kill() -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    timer = threading.Timer(delay_s, kill)
    timer.start()
    return timer


def run_once(config: RunConfig, out: Path, *, kill_every: int | None, console: Console) -> dict:
    """One run, driving the coordinator here; in every ``kill_every``-th round, a device drawn at
    random (seeded) among those the round's plan gives work is killed 0.3 s after the round starts."""
    import numpy as np

    from deft_ray.actors.launch import build_ray
    from deft_ray.runtime.recovery import CoverageError

    run_dir = RunDirectory(out)
    run_dir.claim(overwrite=True)  # this benchmark's own folder: replace an earlier run's
    coordinator = build_ray(config, run_dir)
    rounds = coordinator.run()
    killed: list[int] = []
    draw = np.random.default_rng(config.seed + 1)
    stopped = None
    round_idx = 0
    try:
        while True:
            upcoming = round_idx + 1
            timer = None
            if kill_every and upcoming % kill_every == 0 and upcoming <= config.rounds:
                plan = coordinator.planner.plan(coordinator.instance_for_round(), upcoming)
                victim = str(draw.choice(sorted(plan.assignment)))
                pid = coordinator.pool.pids()[victim]
                console.print(f"  round {upcoming}: killing {victim} (pid {pid}) 0.3 s into the round")
                timer = kill_later(pid, 0.3, killed)
            try:
                record = next(rounds)
            except StopIteration:
                break
            finally:
                if timer:
                    timer.join()
            round_idx = record.round_idx
    except CoverageError as error:
        stopped = str(error)
    import ray

    for handle in [*coordinator.pool.handles.values(), coordinator.planner.handle]:
        ray.kill(handle)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = collections.Counter(e["kind"] for r in lines for e in r["events"]
                                 if e["kind"] not in ("profile_measured", "profile_smoothed", "devices_placed"))
    evaluated = [r for r in lines if r["evaluation"]]
    return {"rounds": len(lines), "blocks_applied": [r["blocks_applied"] for r in lines], "events": dict(events),
            "final": evaluated[-1]["evaluation"] if evaluated else None, "killed": len(killed), "stopped": stopped,
            "emulated_time_s": lines[-1]["emulated_time_s"] if lines else 0.0,
            "devices_left": len(coordinator.specs)}


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--kill-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/benchmark-faults")
    args = parser.parse_args()

    console = Console(width=160)
    ray.init(log_to_driver=False)
    results = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for scheme, policy in (("jbba", "restart"), ("multiblock", "replan")):
        config = make_config(args, scheme, policy)
        for label, kill_every in (("fault-free", None), (f"kill every {args.kill_every}", args.kill_every)):
            console.print(f"[bold]{scheme}, on_device_failure={policy}, {label}")
            out = Path(args.out) / f"{stamp}-{scheme}-{policy}-{'faults' if kill_every else 'clean'}"
            results[(scheme, policy, label)] = run_once(config, out, kill_every=kill_every, console=console)

    num_blocks = max(max(r["blocks_applied"]) for r in results.values())
    table = Table(title=f"{args.devices} devices, {args.rounds} rounds, a device process SIGKILLed every "
                        f"{args.kill_every} rounds (packaged MiniLM, {num_blocks} blocks, seed {args.seed})")
    for column in ("scheme / policy", "run", "processes killed", "rounds completed", "blocks applied per round",
                   "events", "devices left", "final accuracy", "vs fault-free", "emulated s"):
        table.add_column(column, justify="right")
    for (scheme, policy, label), result in results.items():
        clean = results[(scheme, policy, "fault-free")]["final"]
        final = result["final"]
        applied = sorted(set(result["blocks_applied"]))
        table.add_row(f"{scheme} / {policy}", label, str(result["killed"]), str(result["rounds"]),
                      ("all " if len(applied) == 1 else "") + ", ".join(map(str, applied)),
                      ", ".join(f"{k} {v}" for k, v in sorted(result["events"].items())) or "-",
                      str(result["devices_left"]),
                      f"{final['accuracy']:.4f}" if final else "-",
                      f"{final['accuracy'] - clean['accuracy']:+.4f}" if final and clean else "-",
                      f"{result['emulated_time_s']:.1f}")
    console.print(table)
    ok = all(set(r["blocks_applied"]) == {num_blocks} and r["rounds"] == args.rounds for r in results.values())
    console.print(f"every round applied all {num_blocks} blocks exactly once and every run completed: {ok}")
    for result in results.values():
        if result["stopped"]:
            console.print(f"stopped: {result['stopped']}")


if __name__ == "__main__":
    main()
