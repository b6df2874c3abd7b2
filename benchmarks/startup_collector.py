"""What does Python's garbage collector cost a device process's start-up? (issue: runtime)

Starts 12 processes at once, as a run's device processes start, each importing what a device
imports and building the packaged MiniLM with its LoRA adapter, in three modes, one wave after
another: the collector on (Python's default), paused and frozen after (what a device process does,
``deft_ray/actors/collector.py``), and paused with one full collection before the freeze. Prints
each mode's median CPU seconds per process, against the collector on, and its private memory (USS).

    python benchmarks/startup_collector.py [--processes 12] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

from rich.table import Table

MODES = ("on", "paused", "paused, one collection")


def start_up(mode: str, results) -> None:
    import gc

    if mode != "on":
        gc.disable()
    start = time.process_time()
    import deft_ray.actors.device  # noqa: F401  (what a device process imports)
    from deft_ray.learning.model import BlockModel
    from deft_ray.learning.pretrained import default_model_path

    BlockModel.from_pretrained(default_model_path(), num_labels=2, seed=0)
    if mode == "paused, one collection":
        gc.collect()
    if mode != "on":
        gc.freeze()
        gc.enable()
    cpu_s = time.process_time() - start
    import psutil

    results.put((cpu_s, psutil.Process().memory_full_info().uss / 2**20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2, help="waves per mode, the modes interleaved")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    measured: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            results = context.Queue()
            processes = [context.Process(target=start_up, args=(mode, results)) for _ in range(args.processes)]
            for process in processes:
                process.start()
            measured[mode].extend(results.get(timeout=600) for _ in processes)
            for process in processes:
                process.join(timeout=60)
    table = Table(title=f"{args.processes} processes starting at once, {args.repeats} waves per mode")
    for column in ("collector", "median CPU s per process", "against on", "median USS MB"):
        table.add_column(column, justify="right")
    base = statistics.median(cpu for cpu, _ in measured["on"])
    for mode, rows in measured.items():
        cpu = statistics.median(c for c, _ in rows)
        table.add_row(mode, f"{cpu:.2f}", f"{cpu / base:.3f}", f"{statistics.median(u for _, u in rows):.0f}")
    from deft_ray.experiments.terminal import output_console

    output_console().print(table)


if __name__ == "__main__":
    main()
