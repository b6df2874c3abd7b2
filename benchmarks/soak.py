"""Does a long run stay correct and flat in memory while devices die? (issue: runtime)

Runs the default job with 24 devices for 1000 rounds on Ray (virtual clock, Rayleigh fading,
``on_device_failure: restart``) and, every 100 rounds, kills one device process from outside
with SIGKILL (a device drawn at random, seeded, among those the round just finished gave work, so
it is likely to get work again soon; it fails in the first round that does, and is restarted). Checks, from the ledger (``metrics.jsonl``), that the run
finished and that every round applied every block exactly once; and, from the resident memory
(RSS) sampled every ``--sample-every`` rounds, that the coordinator's (this process: it drives the
rounds) and the devices' (the mean over the device processes alive at both ends) grew by at most
5% over the last half of the run (the last 500 rounds). Prints the memory curve and the events.

    python benchmarks/soak.py [--rounds 1000] [--devices 24] [--kill-every 100] [--sample-every 50]

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
from pathlib import Path

from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.experiments.terminal import output_console
from deft_ray.runner import resize_population
from deft_ray.runtime.ledger import RunDirectory

MB = 1024**2
MAX_GROWTH = 0.05


def sample(coordinator) -> tuple[float, dict[int, float]]:
    """The coordinator's RSS and each live device process's (by pid)."""
    import psutil

    pids = coordinator.pool.pids()
    usage = coordinator.pool.memory_usage()
    return float(psutil.Process().memory_info().rss), {pids[name]: usage[name]["rss_bytes"] for name in usage if name in pids}


def every_block_once(lines: list[dict], num_blocks: int) -> list[int]:
    """Rounds whose applied blocks (first phase and recovery) are not each block exactly once."""
    bad = []
    for line in lines:
        applied = sorted(b for phase in [line, *line["recovery"]] for d in phase["devices"].values()
                         if d["status"] == "applied" for b in d["blocks"])
        if applied != list(range(num_blocks)) or line["blocks_applied"] != num_blocks:
            bad.append(line["round"])
    return bad


def main() -> None:
    import numpy as np
    import ray

    from deft_ray.actors.launch import build_ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=24)
    parser.add_argument("--kill-every", type=int, default=100)
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--devices-per-actor", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/benchmark-soak")
    args = parser.parse_args()

    data = to_dict(RunConfig())
    data.update(rounds=args.rounds, seed=args.seed, eval_every=args.eval_every, network={**data["network"], "rayleigh_fading": True},
                reliability={**data["reliability"], "on_device_failure": "restart"},
                runtime={**data["runtime"], "devices_per_actor": args.devices_per_actor})
    config = resize_population(config_from_dict(data), args.devices)
    console = output_console()
    ray.init(log_to_driver=False)
    run_dir = RunDirectory(args.out)
    run_dir.claim(overwrite=True)  # this benchmark's own folder: replace an earlier run's
    coordinator = build_ray(config, run_dir)
    draw = np.random.default_rng(args.seed + 1)
    curve = [(0, *sample(coordinator))]
    kills = 0
    for record in coordinator.run():
        done = record.round_idx
        if done % args.sample_every == 0 or done == config.rounds:
            curve.append((done, *sample(coordinator)))
        if done % args.kill_every == 0 and done < config.rounds:
            pids = coordinator.pool.pids()
            victim = str(draw.choice(sorted(set(record.plan.assignment) & set(pids))))
            os.kill(pids[victim], signal.SIGKILL)
            kills += 1
            console.print(f"after round {done}: killed {victim} (pid {pids[victim]})")
    lines = [json.loads(line) for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines()]
    num_blocks = len(json.loads(run_dir.profile_path.read_text())["blocks"])

    table = Table(title="resident memory (RSS)")
    for column in ("round", "coordinator MB", "device processes", "mean device MB"):
        table.add_column(column, justify="right")
    for done, coordinator_rss, devices in curve:
        table.add_row(str(done), f"{coordinator_rss / MB:.0f}", str(len(devices)),
                      f"{np.mean(list(devices.values())) / MB:.0f}")
    console.print(table)
    events = collections.Counter(e["kind"] for line in lines for e in line["events"])
    console.print("events: " + ", ".join(f"{kind} {count}" for kind, count in sorted(events.items())) +
                  f"; processes killed: {kills}")

    half = min(curve[1:], key=lambda point: abs(point[0] - config.rounds / 2))
    end = curve[-1]
    both = sorted(set(half[2]) & set(end[2]))
    coordinator_growth = end[1] / half[1] - 1
    device_growth = (np.mean([end[2][p] for p in both]) / np.mean([half[2][p] for p in both]) - 1) if both else 0.0
    checks = {
        f"finished all {config.rounds} rounds": len(lines) == config.rounds,
        "every round applied every block exactly once": not every_block_once(lines, num_blocks),
        f"coordinator RSS grew {coordinator_growth:+.1%} from round {half[0]} to {end[0]} (<= {MAX_GROWTH:.0%})":
            coordinator_growth <= MAX_GROWTH,
        f"device RSS grew {device_growth:+.1%} over the {len(both)} processes alive at both (<= {MAX_GROWTH:.0%})":
            device_growth <= MAX_GROWTH,
    }
    for text, ok in checks.items():
        console.print(f"{'ok  ' if ok else 'FAIL'} {text}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
