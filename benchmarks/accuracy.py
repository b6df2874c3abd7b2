"""Does cooperative fine-tuning learn as well as centralised training? (issue: runtime)

Runs `deft-ray run` on SST-2 from the local GLUE folder with the packaged MiniLM and 12 devices
(Ray actors, virtual clock), then trains the same LoRA adapter centrally for the same number of
optimizer steps (one batch per step, every block at once, same seed, optimizer and learning
rate), and prints rounds, validation accuracy and wall time of both, and deft-ray's wall time
against its ideal: per round, the devices' compute (measured inside each device) spread over
the cores, or the longest device's if more, plus the evaluations.

    python benchmarks/accuracy.py [--rounds 400] [--data-dir ../shared/data/glue] [--eval-examples 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runner import resize_population, run

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def centralised(config: RunConfig, *, steps: int) -> tuple[dict[str, float], float, float]:
    """Plain LoRA fine-tuning of the same model: ``steps`` AdamW steps on batches drawn from the
    whole training set, every block trained at once. Returns the final evaluation, the wall time
    and the wall seconds of that one evaluation."""

    from deft_ray.learning.centralised import train_centrally
    from deft_ray.learning.validation import evaluate_adapter
    from deft_ray.runtime.build import prepare

    start = time.perf_counter()
    prepared = prepare(config)
    model = prepared.model
    parameters = list(model.named_trainable_parameters().values())
    optimizer = config.optimizer.build(parameters)
    train_centrally(model, prepared.train_columns, optimizer, steps=steps, batch_size=config.data.batch_size,
                    seed=config.seed, schedule=config.optimizer.build_schedule(optimizer, total_steps=steps))
    evaluated = time.perf_counter()
    evaluation = evaluate_adapter(model, prepared.evaluation)
    return evaluation, time.perf_counter() - start, time.perf_counter() - evaluated


def ideal_wall_s(out: Path, *, evaluation_s: float, cores: int) -> tuple[float, float]:
    """The run's rounds' wall seconds and their ideal: each round's compute lower bound (the
    devices' compute over the cores, or the longest device's; round_overhead.py's bound) plus
    ``evaluation_s`` per evaluation."""
    from round_overhead import round_bounds, work_costs

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = round_bounds(records, work_costs(records), cores)
    ideal = sum(bound + (evaluation_s if record["evaluation"] else 0.0) for record, bound in rows)
    return sum(record["wall_s"] for record in records), ideal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--eval-examples", type=int, default=0, help="0: the whole validation split")
    parser.add_argument("--out", default="runs/benchmark-accuracy")
    args = parser.parse_args()

    data = to_dict(RunConfig())
    data["data"].update(task="sst2", data_dir=args.data_dir, max_eval_examples=args.eval_examples or None)
    data.update(rounds=args.rounds, eval_every=max(args.rounds // 4, 1))
    config = resize_population(config_from_dict(data), args.devices)

    console = Console()
    start = time.perf_counter()
    summary = run(config, out_dir=args.out, console=console, overwrite=True)
    deft_wall_s = time.perf_counter() - start
    central_eval, central_wall_s, evaluation_s = centralised(config, steps=args.rounds)
    rounds_wall_s, ideal_s = ideal_wall_s(Path(args.out), evaluation_s=evaluation_s, cores=os.cpu_count() or 1)

    table = Table(title=f"SST-2, packaged MiniLM, LoRA r={config.model.lora_rank}, batch {config.data.batch_size}")
    for column in ("training", "optimizer steps", "val accuracy", "wall s", "emulated s"):
        table.add_column(column, justify="right")
    deft_accuracy = summary.final_evaluation["accuracy"]
    table.add_row(f"deft-ray, {config.num_devices} devices, {config.scheme}", str(config.rounds),
                  f"{deft_accuracy:.4f}", f"{deft_wall_s:.0f}", f"{summary.emulated_time_s:.1f}")
    table.add_row("centralised LoRA", str(config.rounds), f"{central_eval['accuracy']:.4f}", f"{central_wall_s:.0f}", "-")
    console.print(table)
    console.print(f"deft-ray's rounds: {rounds_wall_s:.0f} s of wall time against an ideal of {ideal_s:.0f} s "
                  f"(the devices' compute over {os.cpu_count()} cores, plus {evaluation_s:.1f} s per evaluation): "
                  f"{rounds_wall_s / ideal_s:.2f}x; with start-up, {deft_wall_s / ideal_s:.2f}x; target <= 1.5x")
    console.print(f"accuracy difference (deft-ray - centralised): {100 * (deft_accuracy - central_eval['accuracy']):+.2f} points; "
                  f"target: deft-ray >= 85% and within 1 point")


if __name__ == "__main__":
    main()
