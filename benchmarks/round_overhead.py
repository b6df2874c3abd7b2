"""How close is a round's wall time to the compute it must do? (issue: runtime)

Runs 12 devices (Ray actors, virtual clock, the packaged MiniLM, the built-in task) for a few
rounds without evaluation and prints, per round, the wall-clock seconds of the round against its
lower bound: the summed single-thread compute seconds of the involved devices' blocks (from the
profile measured at start-up) divided by the machine's cores. It then splits the rest: planning,
publishing the adapter and waiting for uploads, assembly and the optimizer step.

    python benchmarks/round_overhead.py [--rounds 12] [--devices 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runner import resize_population, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--out", default="runs/benchmark-round-overhead")
    args = parser.parse_args()

    data = to_dict(RunConfig())
    data.update(rounds=args.rounds, eval_every=10**6)
    config = resize_population(config_from_dict(data), args.devices)
    console = Console()
    run(config, out_dir=args.out, console=console, overwrite=True)

    out = Path(args.out)
    compute_s = [block["compute_s"] for block in json.loads((out / "profile.json").read_text())["blocks"]]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cores = os.cpu_count()
    table = Table(title=f"{config.num_devices} devices, virtual clock, {cores} cores")
    for column in ("round", "wall s", "lower bound s", "ratio", "plan ms", "slowest device s", "outside uploads s"):
        table.add_column(column, justify="right")
    ratios = []
    for record in records[1:-1]:  # round 1 warms up; the last round also evaluates
        bound = sum(max(compute_s[b] for b in device["blocks"]) for device in record["devices"].values()) / cores
        arrival = max(device["arrival_s"] for device in record["devices"].values())
        ratio = record["wall_s"] / bound
        ratios.append(ratio)
        table.add_row(str(record["round"]), f"{record['wall_s']:.3f}", f"{bound:.3f}", f"{ratio:.2f}",
                      f"{record['plan']['solve_time_s'] * 1e3:.1f}",
                      f"{max(d['measured_compute_s'] for d in record['devices'].values()):.3f}",
                      f"{record['wall_s'] - arrival:.3f}")
    console.print(table)
    console.print(f"median wall / lower bound: {statistics.median(ratios):.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
