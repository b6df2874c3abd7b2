"""How good and how fast is the ``multiblock`` scheme (a device may train several blocks)?

Prints, measured in this one run:

- on random small instances (K in 1..4, N in 1..6, both rate models, K < N included): the gap of
  ``multiblock`` to the exhaustive optimum ``optimal-sets``, and both solve times;
- for K >= N (the RoBERTa-base H200 profile, N = 12, K = 12..24, and RoBERTa-large, N = 24,
  K = 24; paper-like device populations): the round latency of ``multiblock`` against ``jbba``
  (one block per device) and their solve times;
- for K < N (RoBERTa-base with K = 2, 4, 6, 8 and RoBERTa-large with K = 6, 12, 18): the round
  latency of ``multiblock`` against ``single-device``, the only other scheme that plans K < N, and
  the solve time.

Solve times are ``Plan.solve_time_s`` (the scheme alone); this machine is shared and noisy, so
compare ratios, not absolute times.

    python benchmarks/multiblock.py [--small 200] [--populations 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from rich.console import Console
from rich.table import Table

from deft_ray.edge.profiles import load_profile
from deft_ray.planners import Instance, solve
from deft_ray.edge.scenario import PopulationSpec, random_instance, synthetic_blocks

PROFILES = {12: "roberta-base_h200_fp32", 24: "roberta-large_h200_fp32"}
RATE_MODELS = ("shannon", "spectral_efficiency")


def small_instances(count: int, rng: np.random.Generator) -> list[Instance]:
    """Random instances with K in 1..4 and N in 1..6 whose every block fits some device."""
    instances = []
    while len(instances) < count:
        i = len(instances)
        spec = PopulationSpec(num_devices=int(rng.integers(1, 5)), rate_model=RATE_MODELS[i % 2],
                              bandwidth_hz=float(rng.uniform(5e5, 2e7)),
                              distance_m=(50.0, float(rng.uniform(100, 1000))))
        instance = random_instance(synthetic_blocks(int(rng.integers(1, 7)), rng, equal_payload=i % 3 != 0), spec, rng)
        if instance.memory_budgets().max() >= instance.block_memory_bytes().max():
            instances.append(instance)
    return instances


def populations(profile: str, num_devices: int, rate_model: str, count: int,
                rng: np.random.Generator) -> list[Instance]:
    """``count`` paper-like populations of ``profile`` that can hold every block."""
    blocks, instances = load_profile(profile), []
    while len(instances) < count:
        instance = random_instance(blocks, PopulationSpec(num_devices=num_devices, rate_model=rate_model), rng)
        if instance.memory_budgets().max() >= instance.block_memory_bytes().max():
            instances.append(instance)
    return instances


def exactness_table(count: int, rng: np.random.Generator) -> Table:
    gaps, times, exact_times = [], [], []
    instances = small_instances(count, rng)
    for instance in instances:
        plan, optimum = solve(instance, "multiblock"), solve(instance, "optimal-sets")
        gaps.append(plan.round_latency_s / optimum.round_latency_s - 1)
        times.append(plan.solve_time_s)
        exact_times.append(optimum.solve_time_s)
    fewer = sum(instance.num_devices < instance.num_blocks for instance in instances)
    table = Table(title=f"multiblock vs the exhaustive optimum (optimal-sets), {count} instances, K<=4, N<=6")
    for column in ("instances", "of them K<N", "mean gap", "max gap", "gap > 0.1%", "multiblock ms (median)",
                   "optimal-sets ms (median)"):
        table.add_column(column, justify="right")
    table.add_row(str(count), str(fewer), f"{np.mean(gaps):.2e}", f"{max(gaps):.2e}",
                  str(sum(gap > 1e-3 for gap in gaps)), f"{statistics.median(times) * 1e3:.1f}",
                  f"{statistics.median(exact_times) * 1e3:.1f}")
    return table


def comparison_table(title: str, reference: str, sizes: tuple[tuple[int, int], ...], count: int,
                     rng: np.random.Generator) -> Table:
    """``multiblock`` against ``reference`` on ``count`` populations per (N, K) in ``sizes``."""
    table = Table(title=title)
    for column in ("N", "K", "rate model", f"multiblock/{reference} mean", "min", "max",
                   "multiblock ms median", "max", f"{reference} ms median", "devices used"):
        table.add_column(column, justify="right")
    for num_blocks, num_devices in sizes:
        for rate_model in RATE_MODELS:
            ratios, times, reference_times, used = [], [], [], []
            for instance in populations(PROFILES[num_blocks], num_devices, rate_model, count, rng):
                plan, other = solve(instance, "multiblock"), solve(instance, reference)
                ratios.append(plan.round_latency_s / other.round_latency_s)
                times.append(plan.solve_time_s)
                reference_times.append(other.solve_time_s)
                used.append(len(plan.assignment))
            table.add_row(str(num_blocks), str(num_devices), rate_model, f"{np.mean(ratios):.3f}",
                          f"{min(ratios):.3f}", f"{max(ratios):.3f}", f"{statistics.median(times) * 1e3:.0f}",
                          f"{max(times) * 1e3:.0f}", f"{statistics.median(reference_times) * 1e3:.1f}",
                          f"{min(used)}-{max(used)}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200, help="random small instances (default: 200)")
    parser.add_argument("--populations", type=int, default=5, help="populations per row (default: 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    console = Console(width=160)
    console.print(exactness_table(args.small, rng))
    console.print(comparison_table(f"K >= N: multiblock vs jbba ({args.populations} populations per row)", "jbba",
                                   ((12, 12), (12, 16), (12, 20), (12, 24), (24, 24)), args.populations, rng))
    console.print(comparison_table(f"K < N: multiblock vs single-device ({args.populations} populations per row)",
                                   "single-device", ((12, 2), (12, 4), (12, 6), (12, 8), (24, 6), (24, 12), (24, 18)),
                                   args.populations, rng))
    console.print("N = 12: " + PROFILES[12] + ", N = 24: " + PROFILES[24] + "; ratio < 1: multiblock's round is "
                  "shorter; 'devices used': how many devices multiblock involves")


if __name__ == "__main__":
    main()
