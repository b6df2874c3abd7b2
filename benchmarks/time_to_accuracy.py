"""How long does each scheme take to reach a target accuracy? (issue: beyond the paper)

Runs `deft-ray run` on SST-2 from the local GLUE folder with the packaged MiniLM and 12 devices
(Ray actors, virtual clock) once per scheme, with the same seed, data split, optimizer, devices
and block profile (the packaged MiniLM CPU profile, so every scheme is costed alike); each run stops when the validation accuracy first reaches the target (or after
--max-rounds). Prints, per scheme, the emulated time and the rounds to the target, the mean
round latency and the last accuracy, and writes a plot of accuracy against emulated time with one
line per scheme.

    python benchmarks/time_to_accuracy.py [--target 0.85] [--max-rounds 400] [--eval-every 20]
        [--schemes jbba crunch random multiblock fedavg] [--local-steps 1]
        [--plot docs/figures/time_to_accuracy.png]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.experiments.plots import write_comparison_plot
from deft_ray.runner import resize_population, run
from deft_ray.runtime.ledger import read_ledger
from deft_ray.runtime.records import RoundRecord

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def scheme_config(scheme: str, args: argparse.Namespace) -> RunConfig:
    data = to_dict(RunConfig())
    data["data"].update(task="sst2", data_dir=args.data_dir, max_eval_examples=None)
    data.update(scheme=scheme, profile=args.profile, rounds=args.max_rounds, eval_every=args.eval_every, target_metric=args.target,
                seed=args.seed, federated={"local_steps": args.local_steps},
                reliability={**data["reliability"], "checkpoint_every": 0})
    return resize_population(config_from_dict(data), args.devices)


def curve(records: list[RoundRecord]) -> list[dict]:
    return [{"round": r.round_idx, "time_s": r.emulated_time_s, "accuracy": r.evaluation["accuracy"],
             "latency_s": r.measured_latency_s} for r in records if r.evaluation]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", nargs="+", default=["jbba", "crunch", "random", "multiblock", "fedavg"])
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--max-rounds", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--local-steps", type=int, default=1, help="fedavg's local steps per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="minilm-l6_cpu_fp32",
                        help="block costs every scheme plans with (one profile, so latencies compare)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--out", default="runs/benchmark-time-to-accuracy")
    parser.add_argument("--plot", default="docs/figures/time_to_accuracy.png")
    args = parser.parse_args()

    console = Console()
    curves, ledgers, rows = {}, {}, []
    for scheme in args.schemes:
        config = scheme_config(scheme, args)
        run_dir = Path(args.out) / scheme
        start = time.perf_counter()
        run(config, out_dir=run_dir, console=console, overwrite=True)
        wall_s = time.perf_counter() - start
        ledgers[scheme] = records = read_ledger(run_dir / "metrics.jsonl")
        curves[scheme] = points = curve(records)
        hit = next((p for p in points if p["accuracy"] >= args.target), None)
        mean_latency = sum(r.measured_latency_s for r in records) / len(records)
        rows.append((scheme, hit, points[-1], mean_latency, len(records), wall_s))
        (Path(args.out) / "curves.json").write_text(json.dumps(curves, indent=1))

    table = Table(title=f"Time to {args.target:.0%} SST-2 validation accuracy: packaged MiniLM, {args.devices} devices, "
                        f"seed {args.seed}, evaluated every {args.eval_every} rounds")
    for column in ("scheme", "emulated s to target", "rounds to target", "mean round latency s",
                   "last accuracy", "rounds run", "wall s"):
        table.add_column(column, justify="right")
    best = min((hit["time_s"] for _, hit, *_ in rows if hit), default=None)
    for scheme, hit, last, mean_latency, rounds, wall_s in rows:
        reached = (f"{hit['time_s']:.1f}" + (f" ({hit['time_s'] / best:.2f}x)" if best else "")) if hit else "not reached"
        table.add_row(scheme, reached, str(hit["round"]) if hit else f"> {rounds}", f"{mean_latency:.3f}",
                      f"{last['accuracy']:.4f}", str(rounds), f"{wall_s:.0f}")
    console.print(table)
    write_comparison_plot(ledgers, args.plot, metric="accuracy", target=args.target,
                          title=f"SST-2 validation accuracy against emulated time, {args.devices} devices, MiniLM")
    console.print(f"plot: {args.plot}; curves: {Path(args.out) / 'curves.json'}")


if __name__ == "__main__":
    main()
