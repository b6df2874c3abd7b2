"""What does a living edge cost each scheme, and what do compressed uploads buy? (issue #14)

Runs `deft-ray run` on SST-2 from the local GLUE folder with the packaged MiniLM, 24 devices
(the default mix: workstation-, Jetson- and phone-class, 8 of each, packed 6 to a Ray actor), the
virtual clock and a 1 MHz uplink band (a congested cell, where an upload takes about as long as a
block's compute), with the packaged MiniLM CPU block profile so every scheme is costed alike,
under three edges:

- ``static``: every device keeps its distance and its path-loss channel, every round;
- ``moving``: log-normal shadowing (8 dB, correlated over 20 emulated seconds), mobility (the
  Jetson-class devices at 5 m/s, the phones at 1.5 m/s, in their groups' distance ranges) and
  Rayleigh fading, composed;
- ``coming-and-going``: ``moving`` plus Markov availability, each device online for 14 emulated
  seconds and offline for 6 on average (30% offline).

For jbba, crunch, multiblock and fedavg it prints the mean round latency, the rounds and the
emulated seconds to the target accuracy (85%), the total energy and the rounds that had to wait
for devices. Then it runs jbba under ``moving`` for a fixed number of rounds with float32,
float16 and int8 uploads and prints the round latency and the accuracy at the end. It writes
``results.json`` and a plot (accuracy against emulated time per edge, and latency per upload
dtype).

    python benchmarks/dynamics.py [--schemes jbba crunch multiblock fedavg] [--target 0.85]
        [--max-rounds 400] [--dtype-rounds 160] [--eval-every 20] [--devices 24] [--bandwidth-hz 1e6] [--per-actor 6] [--local] [--resume]
        [--plot docs/figures/dynamics.png] [--out runs/benchmark-dynamics]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runner import resize_population, run
from deft_ray.runtime.ledger import read_ledger

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
SPEED_MPS = {"workstation": 0.0, "jetson": 5.0, "phone": 1.5}
EDGES = ("static", "moving", "coming-and-going")


def edge_config(scheme: str, edge: str, args: argparse.Namespace, *, rounds: int, target: float | None,
                upload_dtype: str = "float32") -> RunConfig:
    data = to_dict(resize_population(RunConfig(), args.devices))
    data["data"].update(task="sst2", data_dir=args.data_dir, max_eval_examples=None)
    data.update(scheme=scheme, profile=args.profile, rounds=rounds, eval_every=args.eval_every, target_metric=target,
                seed=args.seed, reliability={**data["reliability"], "checkpoint_every": 0})
    data["network"].update(upload_dtype=upload_dtype, bandwidth_hz=args.bandwidth_hz)
    data["runtime"].update(devices_per_actor=args.per_actor)
    if edge != "static":
        data["network"].update(shadowing_db=8.0, shadowing_coherence_s=20.0, rayleigh_fading=True)
        for group in data["devices"]:
            group["speed_mps"] = SPEED_MPS.get(group["name"], 1.5)
    if edge == "coming-and-going":
        for group in data["devices"]:
            group.update(mean_online_s=14.0, mean_offline_s=6.0)
    return config_from_dict(data)


def measure(config: RunConfig, run_dir: Path, args: argparse.Namespace, console: Console) -> dict:
    start = time.perf_counter()
    summary = run(config, out_dir=run_dir, console=console, overwrite=True, quiet=True, use_ray=not args.local)
    wall_s = time.perf_counter() - start
    records = read_ledger(run_dir / "metrics.jsonl")
    evaluated = [r for r in records if r.evaluation]
    hit = next((r for r in evaluated if config.target_metric is not None
                and r.evaluation["accuracy"] >= config.target_metric), None)
    return {"rounds": len(records), "wall_s": wall_s,
            "mean_latency_s": sum(r.measured_latency_s for r in records) / len(records),
            "rounds_to_target": hit.round_idx if hit else None,
            "emulated_s_to_target": hit.emulated_time_s if hit else None,
            "emulated_s": summary.emulated_time_s, "energy_j": summary.energy_j,
            "waited_rounds": sum(1 for r in records if r.waited_s > 0),
            "waited_s": sum(r.waited_s for r in records),
            "mean_online": sum(len(r.online) for r in records if r.online is not None) / len(records),
            "last_accuracy": evaluated[-1].evaluation["accuracy"],
            "curve": [(r.emulated_time_s, r.evaluation["accuracy"]) for r in evaluated]}


def write_plot(results: dict, dtypes: dict, path: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(EDGES) + bool(dtypes)
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for axis, edge in zip(axes, EDGES):
        for scheme, row in results[edge].items():
            times, accuracy = zip(*row["curve"])
            axis.plot(times, accuracy, marker=".", label=scheme)
        axis.axhline(target, color="grey", linestyle=":", linewidth=1)
        axis.set(title=f"{edge} edge", xlabel="emulated s", ylabel="SST-2 validation accuracy")
        axis.legend()
    names = list(dtypes)
    if names:
        axes[-1].bar(names, [dtypes[name]["mean_latency_s"] for name in names], color="tab:blue")
        for i, name in enumerate(names):
            axes[-1].annotate(f"acc {dtypes[name]['last_accuracy']:.3f}", (i, dtypes[name]["mean_latency_s"]),
                              ha="center", va="bottom")
        axes[-1].set(title="jbba, moving edge: upload dtype", ylabel="mean round latency s")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", nargs="+", default=["jbba", "crunch", "multiblock", "fedavg"])
    parser.add_argument("--edges", nargs="+", default=list(EDGES), choices=EDGES)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--max-rounds", type=int, default=400)
    parser.add_argument("--dtype-rounds", type=int, default=160, help="rounds of each upload-dtype run")
    parser.add_argument("--dtypes", nargs="*", default=["float32", "float16", "int8"],
                        help="upload dtypes to compare (none: skip the comparison)")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--devices", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bandwidth-hz", type=float, default=1e6,
                        help="the cell's uplink band: 1 MHz, a congested cell where uploads take as long as compute")
    parser.add_argument("--per-actor", type=int, default=6, help="runtime.devices_per_actor (Ray only)")
    parser.add_argument("--resume", action="store_true", help="keep the runs an earlier sweep saved in --out/results.json")
    parser.add_argument("--local", action="store_true", help="devices in this process instead of Ray actors")
    parser.add_argument("--profile", default="minilm-l6_cpu_fp32")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--out", default="runs/benchmark-dynamics")
    parser.add_argument("--plot", default="docs/figures/dynamics.png")
    args = parser.parse_args()
    console, out = Console(width=180), Path(args.out)

    results: dict[str, dict[str, dict]] = {edge: {} for edge in args.edges}
    dtypes: dict[str, dict] = {}
    if args.resume and (out / "results.json").is_file():  # keep what an earlier sweep measured
        earlier = json.loads((out / "results.json").read_text())
        dtypes.update(earlier["upload_dtypes"])
        for edge, rows in earlier["edges"].items():
            results.setdefault(edge, {}).update(rows)

    def save() -> None:  # after every run, so a long sweep keeps what it measured
        (out / "results.json").write_text(json.dumps({"edges": results, "upload_dtypes": dtypes}, indent=1) + "\n")

    out.mkdir(parents=True, exist_ok=True)
    for dtype in [d for d in args.dtypes if d not in dtypes]:
        config = edge_config("jbba", "moving", args, rounds=args.dtype_rounds, target=None, upload_dtype=dtype)
        dtypes[dtype] = measure(config, out / "upload" / dtype, args, console)
        save()
    for scheme in args.schemes:
        for edge in [e for e in args.edges if scheme not in results[e]]:
            config = edge_config(scheme, edge, args, rounds=args.max_rounds, target=args.target)
            results[edge][scheme] = row = measure(config, out / edge / scheme, args, console)
            save()
            console.print(f"{edge:>16} {scheme:>10}: {row['rounds']} rounds, {row['wall_s']:.0f} s wall")

    table = Table(title=f"SST-2, packaged MiniLM, {args.devices} devices, virtual clock, target {args.target:.0%}, "
                        f"evaluated every {args.eval_every} rounds ({'in-process' if args.local else 'Ray'} devices)")
    for column in ("edge", "scheme", "mean round latency s", "rounds to target", "emulated s to target",
                   "energy J", "rounds waited", "mean online", "last accuracy"):
        table.add_column(column, justify="right")
    for edge, rows in results.items():
        for scheme, row in rows.items():
            hit = row["rounds_to_target"] is not None
            table.add_row(edge, scheme, f"{row['mean_latency_s']:.3f}",
                          str(row["rounds_to_target"]) if hit else f"> {row['rounds']}",
                          f"{row['emulated_s_to_target']:.1f}" if hit else "not reached", f"{row['energy_j']:.0f}",
                          f"{row['waited_rounds']} ({row['waited_s']:.1f} s)", f"{row['mean_online']:.1f}",
                          f"{row['last_accuracy']:.4f}")
    console.print(table)
    if dtypes:
        console.print(upload_table(dtypes, args.dtype_rounds))
    if set(args.edges) == set(EDGES):
        write_plot(results, dtypes, args.plot, args.target)
        console.print(f"plot: {args.plot}")
    console.print(f"results: {out / 'results.json'}")


def upload_table(dtypes: dict, rounds: int) -> Table:
    uploads = Table(title=f"jbba on the moving edge, {rounds} rounds, by upload dtype")
    for column in ("upload dtype", "mean round latency s", "/ float32", "accuracy", "energy J"):
        uploads.add_column(column, justify="right")
    base = dtypes.get("float32", next(iter(dtypes.values())))["mean_latency_s"]
    for dtype, row in dtypes.items():
        uploads.add_row(dtype, f"{row['mean_latency_s']:.3f}", f"{row['mean_latency_s'] / base:.3f}",
                        f"{row['last_accuracy']:.4f}", f"{row['energy_j']:.0f}")
    return uploads


if __name__ == "__main__":
    main()
