"""Does cooperative fine-tuning learn as well as centralised training? (issue: runtime)

Runs `deft-ray run` on SST-2 from the local GLUE folder with the packaged MiniLM and 12 devices
(Ray actors, virtual clock), then trains the same LoRA adapter centrally for the same number of
optimizer steps (one batch per step, every block at once, same seed, optimizer and learning
rate), and prints rounds, validation accuracy and wall time of both.

    python benchmarks/accuracy.py [--rounds 400] [--data-dir ../shared/data/glue] [--eval-examples 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runner import resize_population, run

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def centralised(config: RunConfig, *, steps: int) -> tuple[dict[str, float], float]:
    """Plain LoRA fine-tuning of the same model: ``steps`` AdamW steps on batches drawn from the
    whole training set, every block trained at once. Returns the final evaluation and wall time."""

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
    return evaluate_adapter(model, prepared.evaluation), time.perf_counter() - start


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
    central_eval, central_wall_s = centralised(config, steps=args.rounds)

    table = Table(title=f"SST-2, packaged MiniLM, LoRA r={config.model.lora_rank}, batch {config.data.batch_size}")
    for column in ("training", "optimizer steps", "val accuracy", "wall s", "emulated s"):
        table.add_column(column, justify="right")
    deft_accuracy = summary.final_evaluation["accuracy"]
    table.add_row(f"deft-ray, {config.num_devices} devices, {config.scheme}", str(config.rounds),
                  f"{deft_accuracy:.4f}", f"{deft_wall_s:.0f}", f"{summary.emulated_time_s:.1f}")
    table.add_row("centralised LoRA", str(config.rounds), f"{central_eval['accuracy']:.4f}", f"{central_wall_s:.0f}", "-")
    console.print(table)
    console.print(f"accuracy difference (deft-ray - centralised): {100 * (deft_accuracy - central_eval['accuracy']):+.2f} points; "
                  f"target: deft-ray >= 85% and within 1 point")


if __name__ == "__main__":
    main()
