"""How close is a round's wall time to the compute it must do? (issue: runtime)

Runs the default job (Ray actors, virtual clock, the packaged MiniLM, the built-in task) with DEFT
(``jbba``) at 12 and 24 devices and with federated averaging (``fedavg``) at 12, for a few rounds
without evaluation, and prints per run the median of each round's wall seconds over its compute lower bound.

The bound of a round is the compute its devices must do, perfectly spread over the machine's
cores: the sum of the involved devices' compute seconds divided by the cores, or the longest
device's alone if that is more. A device's compute seconds are those of its work (its lowest
block for DEFT, since the backward pass stops there; the whole adapter for a local update) as
measured inside the devices (``measured_compute_s``) in the run of the same case under the default
limit, where at most one device computes per core, so nothing waits for a core: the median over
that run's rounds of every upload with that lowest block. (The profile measured at start-up is not
used: it is timed in the driver while the device processes start, and on a busy machine it is
off by tens of percent.) A ratio of 1 means the round cost nothing but the devices' compute; what
it costs beyond is dispatch, the adapter's publication, assembly, the optimizer step and the
ledger. The table of the last run splits some of it out. ``--unbounded`` also runs each case
with every device computing at once (``runtime.max_concurrent_devices`` = the number of devices),
measured against the same per-block costs.

    python benchmarks/round_overhead.py [--rounds 12] [--devices 12 24] [--fedavg-devices 12] [--unbounded]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.experiments.terminal import output_console
from deft_ray.runner import resize_population, run


def ledger(out: Path) -> list[dict]:
    """The measured rounds' ledger lines: round 1 warms up, the last also saves the run."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:-1]


def work_costs(records: list[dict]) -> dict[int, float]:
    """Lowest block -> the median compute seconds measured inside the devices with that lowest block."""
    seen: dict[int, list[float]] = {}
    for record in records:
        for device in record["devices"].values():
            seen.setdefault(min(device["blocks"]), []).append(device["measured_compute_s"])
    return {block: statistics.median(values) for block, values in seen.items()}


def round_bounds(records: list[dict], costs: dict[int, float], cores: int) -> list[tuple[dict, float]]:
    """Each round's ledger line and its compute lower bound (module docstring)."""
    rows = []
    for record in records:
        work = [costs[min(device["blocks"])] for device in record["devices"].values()]
        rows.append((record, max(sum(work) / cores, max(work))))
    return rows


def run_case(scheme: str, devices: int, rounds: int, limit: int | None, out: Path, console) -> list[dict]:
    data = to_dict(RunConfig())
    data.update(rounds=rounds, eval_every=10**6, scheme=scheme,
                runtime={**data["runtime"], "max_concurrent_devices": limit})
    run(resize_population(config_from_dict(data), devices), out_dir=out, console=console, overwrite=True, quiet=True)
    return ledger(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--devices", type=int, nargs="*", default=[12, 24], help="DEFT (jbba) populations")
    parser.add_argument("--fedavg-devices", type=int, nargs="*", default=[12], help="fedavg populations")
    parser.add_argument("--unbounded", action="store_true", help="also run every case with no concurrency limit")
    parser.add_argument("--out", default="runs/benchmark-round-overhead")
    args = parser.parse_args()

    console = output_console()
    cores = os.cpu_count() or 1
    cases = [("jbba", n) for n in args.devices] + [("fedavg", n) for n in args.fedavg_devices]
    summary = Table(title=f"median round wall / compute lower bound, virtual clock, {cores} cores")
    for column in ("scheme", "devices", "concurrent devices", "median wall s", "median bound s", "ratio", "target"):
        summary.add_column(column, justify="right")
    last: list = []
    for scheme, devices in cases:
        costs = None
        for limit in ([None, devices] if args.unbounded else [None]):
            label = f"{cores} (default)" if limit is None else f"{limit} (all)"
            out = Path(args.out) / f"{scheme}-{devices}-{'default' if limit is None else 'all'}"
            records = run_case(scheme, devices, args.rounds, limit, out, console)
            costs = costs or work_costs(records)  # the default limit's run calibrates both
            rows = last = round_bounds(records, costs, cores)
            summary.add_row(scheme, str(devices), label, f"{statistics.median(r['wall_s'] for r, _ in rows):.3f}",
                            f"{statistics.median(b for _, b in rows):.3f}",
                            f"{statistics.median(r['wall_s'] / b for r, b in rows):.3f}",
                            "<= 1.2" if scheme == "fedavg" else "<= 1.05")
    table = Table(title="the last run, round by round")
    for column in ("round", "wall s", "lower bound s", "ratio", "plan ms", "slowest device s", "outside uploads s"):
        table.add_column(column, justify="right")
    for record, bound in last:
        arrival = max(device["arrival_s"] for device in record["devices"].values())
        table.add_row(str(record["round"]), f"{record['wall_s']:.3f}", f"{bound:.3f}", f"{record['wall_s'] / bound:.2f}",
                      f"{record['plan']['solve_time_s'] * 1e3:.1f}",
                      f"{max(d['measured_compute_s'] for d in record['devices'].values()):.3f}",
                      f"{record['wall_s'] - arrival:.3f}")
    console.print(table)
    console.print(summary)


if __name__ == "__main__":
    main()
