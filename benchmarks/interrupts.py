"""Ctrl-C and SIGTERM against real `deft-ray run` processes: how long a stop takes, and what it keeps.

For each of (--local, SIGINT) and (Ray, SIGTERM): start the default job (packaged MiniLM, 12
devices, jbba, virtual clock) for --rounds rounds, send the signal once --at rounds are in the
ledger, and time the process's exit. Then resume it to the end and compare its ledger with an
uninterrupted run of the same config (every field but wall-clock measurements and events).

    python benchmarks/interrupts.py [--rounds 24] [--at 8] [--out runs/benchmark-interrupts]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from deft_ray.runtime.ledger import seeded_fields as deterministic


def ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "deft_ray.cli", "run", "--config", str(config), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--at", type=int, default=8, help="rounds done when the signal is sent")
    parser.add_argument("--out", default="runs/benchmark-interrupts")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = out / "job.yaml"
    config.write_text(yaml.safe_dump({"rounds": args.rounds, "eval_every": args.rounds, "profile": "minilm-l6_cpu_fp32",
                                      "reliability": {"checkpoint_every": 0}}))
    env = {**os.environ, "RAY_ADDRESS": ""}
    console = Console()
    subprocess.run(command(config, "--out", str(out / "whole"), "--local"), env=env, check=True,
                   capture_output=True, timeout=3600)
    reference = [deterministic(line) for line in ledger(out / "whole")]
    table = Table(title=f"default job, {args.rounds} rounds, signal after round {args.at}")
    for column in ("where", "signal", "exit status", "rounds kept", "signal to exit s", "checkpoint",
                   "resumed ledger = uninterrupted"):
        table.add_column(column, justify="right")
    for where, signum in (("local", signal.SIGINT), ("ray", signal.SIGTERM)):
        run_dir = out / where
        local = ["--local"] if where == "local" else []
        process = subprocess.Popen(command(config, "--out", str(run_dir), *local), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not (run_dir / "metrics.jsonl").is_file() or len(ledger(run_dir)) < args.at:
            if process.poll() is not None:
                raise SystemExit(process.stderr.read()[-3000:])
            time.sleep(0.05)
        process.send_signal(signum)
        sent = time.perf_counter()
        _, stderr = process.communicate(timeout=600)
        stop_s = time.perf_counter() - sent
        kept = len(ledger(run_dir))
        checkpoint = (run_dir / "checkpoints" / f"round-{kept:06d}.ckpt").is_file()
        subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--resume", str(run_dir), *local], env=env,
                       check=True, capture_output=True, timeout=3600)
        same = [deterministic(line) for line in ledger(run_dir)] == reference
        table.add_row(where, signal.Signals(signum).name, str(process.returncode), str(kept), f"{stop_s:.2f}",
                      "yes" if checkpoint else "no", "yes" if same else "NO")
        console.print(f"{where}: {stderr.strip().splitlines()[-1]}")
    console.print(table)


if __name__ == "__main__":
    main()
