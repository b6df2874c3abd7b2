"""Do realtime rounds take as long as planned? (issue: experiments, fidelity check)

Runs the default job under the realtime clock (every compute window and transmission really
elapses, `time_scale` wall seconds per emulated second) and prints, per round, the planned and
the measured round latency (dispatch to last upload, divided by time_scale) and their mean absolute
relative error. The target is at most 10%.

The emulated windows must be long enough for this host's real computation: with 6 devices
computing at once on 2 cores, each takes about 3x its solo time, so a device whose window
(compute_scale x profile time x time_scale) is shorter becomes a real straggler. time_scale 6
leaves every device of the default mix room; time_scale 2 does not (the fast devices then run
late, which is what the realtime clock is for, but then the plan is no longer what happens).

    python benchmarks/fidelity.py [--rounds 12] [--time-scale 6] [--devices 12]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runner import resize_population, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--time-scale", type=float, default=6.0)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--out", default="runs/benchmark-fidelity")
    args = parser.parse_args()

    data = to_dict(RunConfig())
    data.update(rounds=args.rounds, clock="realtime", time_scale=args.time_scale, eval_every=10**6)
    config = resize_population(config_from_dict(data), args.devices)
    console = Console()
    run(config, out_dir=args.out, console=console, overwrite=True)

    records = [json.loads(line) for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines()]
    table = Table(title=f"realtime clock, time_scale {args.time_scale}, {config.num_devices} devices")
    for column in ("round", "planned s", "measured s", "relative error", "late devices"):
        table.add_column(column, justify="right")
    errors = []
    for record in records:
        planned, measured = record["planned_latency_s"], record["measured_latency_s"]
        late = [name for name, device in record["devices"].items()
                if device["compute_s"] > record["plan"]["device_latency_s"][name] - device["upload_s"] + 1e-9]
        errors.append(abs(measured - planned) / planned)
        table.add_row(str(record["round"]), f"{planned:.3f}", f"{measured:.3f}", f"{errors[-1]:.1%}", str(len(late)))
    console.print(table)
    console.print(f"mean absolute relative error: {np.mean(errors):.1%} (target <= 10%); rounds 2..: "
                  f"{np.mean(errors[1:]):.1%}")


if __name__ == "__main__":
    main()
