"""How close is a round's wall time to the compute it must do? (issue: runtime)

Runs the default job on SST-2 from the local GLUE folder (Ray actors, virtual clock, the packaged
MiniLM) with DEFT (``jbba``) at 12 and 24 devices and with federated averaging (``fedavg``) at 12,
every device of the federated case holding the whole adapter so that all take part (one local
AdamW step of one batch each), for a few rounds without evaluation, and prints per run the
median of each round's wall seconds over its compute lower bound.

The bound of a round is the compute its devices must do, perfectly spread over the machine's
cores: the sum of the involved devices' compute seconds divided by the cores, or the longest
device's alone if that is more. A device's compute seconds are those of its work in that round
(its blocks' backward pass for DEFT; one local step over the whole adapter for fedavg) as measured
inside the device (``measured_compute_s``) in the run of the same case under the default limit,
where at most one device computes per core, so nothing waits for a core. Each round's own
measurement is used, since batches are cut to their longest example and their cost varies by a
factor of three; a device draws the same batches and the planner makes the same plans in every
run of a case, so the figures calibrate the ``--unbounded`` run too. (The profile measured at
start-up is not used: it is timed in the driver while the device processes start, and on a busy
machine it is off by tens of percent.) A ratio of 1 means the round cost nothing but the
devices' compute; what it costs beyond is dispatch, the adapter's publication, assembly, the
optimizer step and the ledger. The table of the last run splits some of it out.

That bound lets a job be cut between cores, which one device's single-threaded computation
cannot be. So the summary also gives each round against the best schedule of its measured jobs
as they are, whole, on the cores (every assignment tried): the floor no dispatch order can beat,
whose distance to the bound is the schedule's own tail.
``--unbounded`` also runs each case with every device computing at once
(``runtime.max_concurrent_devices`` = the number of devices), measured against the same
per-round costs.

``--deft-schemes jbba exact`` adds the exact solver, which plans the same problem in a fraction of
jbba's time, to show what the planner's solve time costs a round.

    python benchmarks/round_overhead.py [--rounds 12] [--devices 12 24] [--deft-schemes jbba] [--fedavg-devices 12]
                                        [--limits 3 4] [--unbounded]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
from pathlib import Path

from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.experiments.terminal import output_console
from deft_ray.runner import resize_population, run

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def ledger(out: Path) -> list[dict]:
    """The measured rounds' ledger lines: round 1 warms up, the last also saves the run."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:-1]


def work_costs(records: list[dict]) -> dict[tuple[int, str], float]:
    """(round, device) -> the compute seconds the device measured inside itself for its work of that round."""
    return {(record["round"], name): device["measured_compute_s"]
            for record in records for name, device in record["devices"].items()}


def round_bounds(records: list[dict], costs: dict[tuple[int, str], float], cores: int) -> list[tuple[dict, float]]:
    """Each round's ledger line and its compute lower bound (module docstring)."""
    rows = []
    for record in records:
        work = [costs[(record["round"], name)] for name in record["devices"]]
        rows.append((record, max(sum(work) / cores, max(work))))
    return rows


def best_schedule_s(work: list[float], cores: int, *, max_assignments: int = 1 << 16) -> float | None:
    """The shortest time in which ``cores`` cores run the jobs ``work`` (seconds each), no job split:
    the least, over every assignment of jobs to cores, of the busiest core's sum (``None`` when
    there are more than ``max_assignments`` to try)."""
    if cores >= len(work):
        return max(work, default=0.0)
    if cores ** len(work) > max_assignments:
        return None
    return min(max(sum(w for w, core in zip(work, assignment) if core == c) for c in range(cores))
               for assignment in itertools.product(range(cores), repeat=len(work)))


def case_config(scheme: str, devices: int, rounds: int, data_dir: str, *, limit: int | None = None,
                per_actor: int = 1) -> RunConfig:
    """The default job on SST-2 without evaluation; for ``fedavg`` every device holds the whole
    adapter, so all take part (one local step each)."""
    data = to_dict(RunConfig())
    data.update(rounds=rounds, eval_every=10**6, scheme=scheme,
                runtime={**data["runtime"], "max_concurrent_devices": limit, "devices_per_actor": per_actor})
    data["data"].update(task="sst2", data_dir=data_dir)
    if scheme == "fedavg":
        for group in data["devices"]:
            group["memory_fraction"] = max(group["memory_fraction"], 1.2)
    return resize_population(config_from_dict(data), devices)


def run_case(scheme: str, devices: int, rounds: int, limit: int | None, out: Path, console, data_dir: str,
             per_actor: int = 1) -> list[dict]:
    config = case_config(scheme, devices, rounds, data_dir, limit=limit, per_actor=per_actor)
    run(config, out_dir=out, console=console, overwrite=True, quiet=True)
    return ledger(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--devices", type=int, nargs="*", default=[12, 24], help="DEFT populations")
    parser.add_argument("--deft-schemes", nargs="*", default=["jbba"], help="DEFT schemes to run at each population")
    parser.add_argument("--fedavg-devices", type=int, nargs="*", default=[12], help="fedavg populations")
    parser.add_argument("--unbounded", action="store_true", help="also run every case with no concurrency limit")
    parser.add_argument("--limits", type=int, nargs="*", default=[], help="also run every case with these limits")
    parser.add_argument("--devices-per-actor", type=int, default=1, help="runtime.devices_per_actor of every run")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="the GLUE folder holding sst2/")
    parser.add_argument("--out", default="runs/benchmark-round-overhead")
    args = parser.parse_args()

    console = output_console()
    cores = os.cpu_count() or 1
    cases = [(scheme, n) for n in args.devices for scheme in args.deft_schemes] + [("fedavg", n) for n in args.fedavg_devices]
    summary = Table(title=f"median round wall / compute lower bound, virtual clock, {cores} cores")
    for column in ("scheme", "devices", "concurrent devices", "median wall s", "median bound s", "ratio", "target",
                   "wall / best schedule", "planned ahead"):
        summary.add_column(column, justify="right")
    last: list = []
    for scheme, devices in cases:
        costs = None
        limits = dict.fromkeys([None, *args.limits, *([devices] if args.unbounded else [])])
        for limit in limits:
            label = f"{cores} (default)" if limit is None else f"{limit}{' (all)' if limit == devices else ''}"
            out = Path(args.out) / f"{scheme}-{devices}-{'default' if limit is None else limit}"
            records = run_case(scheme, devices, args.rounds, limit, out, console, args.data_dir, args.devices_per_actor)
            costs = costs or work_costs(records)  # the default limit's run calibrates the others
            rows = last = round_bounds(records, costs, cores)
            best = [best_schedule_s([costs[(r["round"], name)] for name in r["devices"]], cores) for r, _ in rows]
            against_best = [r["wall_s"] / b for (r, _), b in zip(rows, best) if b]
            summary.add_row(scheme, str(devices), label, f"{statistics.median(r['wall_s'] for r, _ in rows):.3f}",
                            f"{statistics.median(b for _, b in rows):.3f}",
                            f"{statistics.median(r['wall_s'] / b for r, b in rows):.3f}",
                            "<= 1.2" if scheme == "fedavg" else "<= 1.05",
                            f"{statistics.median(against_best):.3f}" if against_best else "-",
                            f"{sum(r.get('planned_ahead', False) for r, _ in rows)} of {len(rows)}")
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
