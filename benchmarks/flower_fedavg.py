"""FedAvg rounds side by side with a Flower simulation doing the same work (issue: runtime)

Both sides run the default job's federated case of ``benchmarks/round_overhead.py``: 12 clients
on SST-2 (local GLUE folder), each one local AdamW step on a batch of 16 sentences cut to its
longest example, with the packaged MiniLM and the same LoRA adapter. The work itself runs
through deft-ray's model and local-update code on both sides, and Flower's client ``i`` draws the
batches deft-ray's device ``i`` draws (same partition, same seeded stream), so only the
orchestration differs.

Flower runs in its best configuration for this work: its simulation engine on Ray, one client
per CPU (``num_cpus=1``: two actor processes on two cores), the model built once per actor
process, the round driven by Flower's own ``FedAvg`` strategy with no client evaluation.
deft-ray runs ``fedavg`` through ``benchmarks/round_overhead.py`` (one process per device by
default; ``--devices-per-actor 6`` packs them as Flower's actors do). The two alternate, a Flower
run then a deft-ray run, each in a fresh process with its own Ray, and rounds 2 to 9 of 10 are
compared: the total wall time of those rounds, and each side's wall time over its own compute
lower bound (per round, the clients' compute seconds measured inside them, summed over the
cores, or the longest one's if that is more).

It needs Flower's simulation in the same environment as deft-ray (not one of deft-ray's
dependencies):

    pip install 'flwr[simulation]==1.42.*'
    python benchmarks/flower_fedavg.py [--pairs 3] [--devices-per-actor 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from rich.table import Table

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = HERE.parents[1] / "shared" / "data" / "glue"
CLIENTS = 12
ROUNDS = 10


def federated_config(data_dir: str):
    """The federated case of ``benchmarks/round_overhead.py``: every device holds the whole adapter."""
    sys.path.insert(0, str(HERE))
    from round_overhead import case_config

    return case_config("fedavg", CLIENTS, ROUNDS, data_dir)


def write_client_inputs(config, path: Path) -> None:
    """What a Flower client needs to compute as deft-ray's device of its index does."""
    from deft_ray.runtime.build import prepare

    prepared = prepare(config)
    with path.open("wb") as file:
        pickle.dump({"setup": prepared.setup, "names": [spec.name for spec in prepared.specs],
                     "train_columns": prepared.train_columns, "partitions": prepared.partitions}, file)


def _actor_cache() -> types.ModuleType:
    """State kept for the life of a Flower actor process. The client function travels to the
    actors by value, so the cache lives in ``sys.modules``, which every call sees."""
    return sys.modules.setdefault("_deft_ray_flower_benchmark", types.ModuleType("_deft_ray_flower_benchmark"))


def _client_model(inputs_path: str):
    cache = _actor_cache()
    if not hasattr(cache, "model"):
        import torch

        from deft_ray.learning.model import BlockModel

        torch.set_num_threads(1)
        with open(inputs_path, "rb") as file:
            cache.inputs = pickle.load(file)
        setup = cache.inputs["setup"]
        cache.model = BlockModel.from_pretrained(setup.model_path, num_labels=setup.num_labels, lora=setup.lora,
                                                 seed=setup.seed)
    return cache.model, cache.inputs


def _client_batch(inputs: dict, index: int, server_round: int):
    """The batch deft-ray's device ``index`` trains on in round ``server_round`` (one per round)."""
    import numpy as np

    from deft_ray.learning.batches import BatchStream, TensorTable

    setup = inputs["setup"]
    seed = np.random.SeedSequence([setup.seed, *inputs["names"][index].encode()]).generate_state(1)[0]
    stream = BatchStream(TensorTable(inputs["train_columns"]), inputs["partitions"][index],
                         batch_size=setup.batch_size, seed=int(seed))
    for _ in range(server_round - 1):
        stream.next_batch()
    return stream.next_batch()


def run_flower(inputs_path: Path, compute_log: Path) -> list[float]:
    """One Flower simulation of ``ROUNDS`` rounds; each round's wall seconds (clients append
    their measured compute seconds to ``compute_log``)."""
    import torch
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from deft_ray.learning.local_update import local_update

    client_app = ClientApp()

    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        model, inputs = _client_model(str(inputs_path))
        index = int(context.node_config["partition-id"])
        server_round = int(message.content["config"]["server-round"])
        model.load_trainable_state(message.content["arrays"].to_torch_state_dict())
        batch = _client_batch(inputs, index, server_round)
        optimizer = inputs["setup"].optimizer
        start = time.perf_counter()
        delta, loss = local_update(model, [batch], optimizer=optimizer.name, lr=optimizer.lr,
                                   weight_decay=optimizer.weight_decay)
        compute_s = time.perf_counter() - start
        state = model.trainable_state()
        new = {name: state[name] + delta[name] if name in delta else state[name] for name in state}
        with open(compute_log, "a") as log:
            log.write(json.dumps({"round": server_round, "client": index, "compute_s": compute_s}) + "\n")
        content = RecordDict({"arrays": ArrayRecord(new),
                              "metrics": MetricRecord({"num-examples": len(batch["labels"]), "loss": loss})})
        return Message(content=content, reply_to=message)

    server_app = ServerApp()
    round_ends: list[float] = []

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        from deft_ray.learning.model import BlockModel

        with open(inputs_path, "rb") as file:
            setup = pickle.load(file)["setup"]
        model = BlockModel.from_pretrained(setup.model_path, num_labels=setup.num_labels, lora=setup.lora,
                                           seed=setup.seed)
        initial = ArrayRecord({name: tensor.clone() for name, tensor in model.trainable_state().items()})

        def round_done(server_round: int, arrays: ArrayRecord) -> None:
            round_ends.append(time.perf_counter())

        FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=CLIENTS,
               min_available_nodes=CLIENTS).start(grid=grid, initial_arrays=initial, num_rounds=ROUNDS,
                                                  evaluate_fn=round_done)

    torch.set_num_threads(1)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=CLIENTS,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"log_to_driver": False}})
    return [end - start for start, end in itertools.pairwise(round_ends)]


def run_logged(command: list[str], log_path: Path) -> None:
    """Run ``command`` with its output in ``log_path``; on failure show the log's end and stop."""
    with log_path.open("w") as log:
        done = subprocess.run(command, check=False, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{Path(command[1]).name} exited with {done.returncode}; the end of its output:\n"
                 + "\n".join(log_path.read_text().splitlines()[-30:]))


def flower_rounds(inputs_path: Path, work: Path) -> list[dict]:
    """Rounds 2 to 9 of a Flower run in a process of its own: wall seconds and clients' compute."""
    compute_log, walls_file = work / "flower-compute.jsonl", work / "flower-walls.json"
    compute_log.unlink(missing_ok=True)
    run_logged([sys.executable, __file__, "--flower-child", str(inputs_path), str(compute_log), str(walls_file)],
               work / "flower.log")
    walls = json.loads(walls_file.read_text())
    compute: dict[int, list[float]] = {}
    for line in compute_log.read_text().splitlines():
        entry = json.loads(line)
        compute.setdefault(entry["round"], []).append(entry["compute_s"])
    return [{"wall_s": walls[r - 1], "compute_s": compute[r]} for r in range(2, ROUNDS)]


def deft_ray_rounds(work: Path, data_dir: str, per_actor: int) -> list[dict]:
    """Rounds 2 to 9 of deft-ray's fedavg run (``benchmarks/round_overhead.py``) in a process of its own."""
    out = work / "deft-ray"
    run_logged([sys.executable, str(HERE / "round_overhead.py"), "--devices", "--fedavg-devices", str(CLIENTS),
                "--rounds", str(ROUNDS), "--devices-per-actor", str(per_actor), "--data-dir", data_dir,
                "--out", str(out)], work / "deft-ray.log")
    records = [json.loads(line) for line in (out / f"fedavg-{CLIENTS}-default" / "metrics.jsonl").read_text().splitlines()]
    return [{"wall_s": r["wall_s"], "compute_s": [d["measured_compute_s"] for d in r["devices"].values()]}
            for r in records[1:-1]]


def bound_s(compute_s: list[float], cores: int) -> float:
    return max(sum(compute_s) / cores, max(compute_s))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--flower-child":
        walls = run_flower(Path(sys.argv[2]), Path(sys.argv[3]))
        Path(sys.argv[4]).write_text(json.dumps(walls))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="Flower runs, each followed by a deft-ray run")
    parser.add_argument("--devices-per-actor", type=int, default=1, help="deft-ray's runtime.devices_per_actor")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="the GLUE folder holding sst2/")
    args = parser.parse_args()
    try:
        import flwr  # noqa: F401
    except ImportError:
        sys.exit("this benchmark needs Flower's simulation: pip install 'flwr[simulation]==1.42.*'")
    from deft_ray.experiments.terminal import output_console

    console = output_console()
    cores = os.cpu_count() or 1
    table = Table(title=f"rounds 2-{ROUNDS - 1} of {ROUNDS}, {CLIENTS} clients, {cores} cores, "
                        f"deft-ray with {args.devices_per_actor} device(s) per process")
    for column in ("pair", "Flower s", "deft-ray s", "deft-ray / Flower", "Flower wall / bound",
                   "deft-ray wall / bound", "deft-ray compute / Flower compute"):
        table.add_column(column, justify="right")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="deft-ray-flower-") as tmp:
        work = Path(tmp)
        inputs_path = work / "client-inputs.pkl"
        write_client_inputs(federated_config(args.data_dir), inputs_path)
        for pair in range(1, args.pairs + 1):
            console.print(f"pair {pair} of {args.pairs}: Flower, then deft-ray")
            flower = flower_rounds(inputs_path, work)
            deft = deft_ray_rounds(work, args.data_dir, args.devices_per_actor)
            flower_s, deft_s = sum(r["wall_s"] for r in flower), sum(r["wall_s"] for r in deft)
            ratios.append(deft_s / flower_s)
            table.add_row(str(pair), f"{flower_s:.2f}", f"{deft_s:.2f}", f"{deft_s / flower_s:.3f}",
                          f"{flower_s / sum(bound_s(r['compute_s'], cores) for r in flower):.3f}",
                          f"{deft_s / sum(bound_s(r['compute_s'], cores) for r in deft):.3f}",
                          f"{sum(sum(r['compute_s']) for r in deft) / sum(sum(r['compute_s']) for r in flower):.3f}")
    console.print(table)
    console.print(f"deft-ray round / Flower round, median of {len(ratios)} pairs: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
