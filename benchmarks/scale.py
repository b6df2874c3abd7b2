"""How do start-up, memory and round time grow with the number of devices? (issue: cluster)

Runs the default job (packaged MiniLM, the default device mix resized, virtual clock) with 12, 24
and 48 device actors, then 96 and 200 devices packed ``--per-actor`` to a process
(``runtime.devices_per_actor``), for a few rounds on this machine and prints, per population: the
device processes' start-up seconds (placement group to every model built), one device's share of
its process's start-up per stage in CPU seconds (worker: Ray's worker and the unpickled arguments;
imports: torch, transformers, peft; model: the LoRA model around the shared backbone; data: the
batch stream; deft_ray/actors/startup.py), the unique resident memory (USS: pages only that
process holds) per device (a packed process's divided by its devices) and in total, and seconds
per round. The frozen backbone sits once in Ray's object store and every device maps it
zero-copy, so a device costs the Python/torch process floor, which packing shares.

    python benchmarks/scale.py [--devices 12 24 48] [--packed-devices 96 200] [--per-actor 25] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.experiments.terminal import output_console
from deft_ray.runner import resize_population, run

MB = 1024**2


class MemoryProbe:
    """A Ray actor like a device, for comparison: ``floor`` imports what a device imports and
    builds nothing; ``mmap`` loads the model itself with ``from_pretrained`` (transformers maps the
    safetensors file, so its pages stay shared with other readers of the file); ``copy`` also
    clones every weight into the process's own memory, as a device holding a private copy would."""

    def __init__(self, kind: str):
        import torch  # noqa: F401

        import deft_ray.actors.device  # noqa: F401  (what a device process imports)
        from deft_ray.learning.lora import LoraSpec
        from deft_ray.learning.model import BlockModel
        from deft_ray.learning.pretrained import default_model_path

        torch.set_num_threads(1)
        if kind in ("mmap", "copy"):
            self.model = BlockModel.from_pretrained(default_model_path(), num_labels=2, lora=LoraSpec(), seed=0)
        if kind == "copy":
            for tensor in [*self.model.peft_model.parameters(), *self.model.peft_model.buffers()]:
                tensor.data = tensor.data.clone()

    def uss_bytes(self) -> float:
        import psutil

        return float(psutil.Process().memory_full_info().uss)


def probe_memory() -> dict[str, float]:
    """USS of a floor actor and of a device-like actor that copies the model."""
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    probe = ray.remote(MemoryProbe).options(num_cpus=0)
    actors = {kind: probe.remote(kind) for kind in ("floor", "mmap", "copy")}
    return {kind: ray.get(actor.uss_bytes.remote(), timeout=600) for kind, actor in actors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[12, 24, 48],
                        help="populations to run with an actor per device")
    parser.add_argument("--packed-devices", type=int, nargs="*", default=[96, 200],
                        help="populations to run packed --per-actor devices to a process")
    parser.add_argument("--per-actor", type=int, default=25, help="runtime.devices_per_actor of the packed runs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default="runs/benchmark-scale")
    parser.add_argument("--no-probes", action="store_true", help="skip the three memory-probe actors")
    args = parser.parse_args()

    console = output_console()
    rows = []
    runs = [(n, 1) for n in args.devices or []] + [(n, args.per_actor) for n in args.packed_devices or []]
    for num_devices, per_actor in runs:
        data = to_dict(RunConfig())
        data.update(rounds=args.rounds, eval_every=10**6, data={**data["data"], "max_eval_examples": 64},
                    runtime={**data["runtime"], "devices_per_actor": per_actor})
        config = resize_population(config_from_dict(data), num_devices)
        out = Path(args.out) / f"devices-{num_devices}-per-actor-{per_actor}"
        summary = run(config, out_dir=out, console=console, overwrite=True)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        placed = next(event for record in records for event in record["events"] if event["kind"] == "devices_placed")
        memory = summary.device_memory
        rows.append((num_devices, per_actor, placed["startup_s"], placed["startup_stages_s"], memory.mean_uss_bytes,
                     memory.total_uss_bytes, statistics.median(r["wall_s"] for r in records[1:-1] or records)))

    if not args.no_probes:
        probes = probe_memory()
        console.print(f"process floor (imports, no model): {probes['floor'] / MB:.0f} MB USS; loading the model "
                      f"itself: {probes['mmap'] / MB:.0f} MB (file pages mapped, shared); holding a private copy: "
                      f"{probes['copy'] / MB:.0f} MB")
    if not rows:
        return
    table = Table(title="devices on this machine (virtual clock); start-up CPU s are one device's share")
    for column in ("devices", "per process", "start-up s", "worker CPU s", "imports CPU s", "model CPU s",
                   "data CPU s", "CPU s per device", "USS per device MB", "total USS GB", "s per round"):
        table.add_column(column, justify="right")
    for devices, per_actor, startup_s, stages, uss, total, round_s in rows:
        table.add_row(str(devices), str(per_actor), f"{startup_s:.0f}",
                      *(f"{stages[f'{stage}_cpu_s']:.2f}" for stage in ("worker", "imports", "model", "data")),
                      f"{stages['cpu_s']:.2f}", f"{uss / MB:.0f}", f"{total / 1024**3:.2f}", f"{round_s:.2f}")
    console.print(table)
    first, last = rows[0], rows[-1]
    console.print(f"total device memory, {last[0]} vs {first[0]} devices: {last[5] / first[5]:.2f}x "
                  f"(devices: {last[0] / first[0]:.1f}x); per device {last[4] / MB:.0f} MB vs {first[4] / MB:.0f} MB")


if __name__ == "__main__":
    main()
