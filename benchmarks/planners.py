"""How fast and how good are the planners? (issue: planning core)

For K in 12, 24, 48, 96, 192 devices and N in 12, 24 blocks (the RoBERTa-base and -large H200
profiles, paper-like device populations), prints:

- the matching at fixed equal bandwidth, solved by the CRUNCH algorithm (``crunch_matching``) and
  by the cvxpy MILP (``milp_matching``) on the same latency matrix: their times, whether their
  bottlenecks agree, and the speed ratio MILP / CRUNCH;
- the solve time of the ``crunch``, ``jbba`` and ``exact-bisection`` schemes through
  ``deft_ray.planners.solve`` (profile smoothing, feasibility check and scoring included);
- JBBA's round latency against the exact joint optimum and against CRUNCH.

Times are medians over repeats measured in this one run (this machine is shared and noisy, so
compare ratios, not absolute times).

    python benchmarks/planners.py [--repeats 5] [--rate-model shannon|spectral_efficiency]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from deft_ray.edge.profiles import load_profile
from deft_ray.planners import solve
from deft_ray.planners.crunch import crunch_matching
from deft_ray.planners.matching import milp_matching
from deft_ray.planners.problem import make_monotone, pair_latency_s
from deft_ray.edge.scenario import PopulationSpec, random_instance

PROFILES = {12: "roberta-base_h200_fp32", 24: "roberta-large_h200_fp32"}


def median_time_s(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate-model", default="shannon", choices=["shannon", "spectral_efficiency"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = Table(title=f"planner solve times ({args.rate_model} rates, median of {args.repeats})")
    for column in ("N", "K", "CRUNCH ms", "MILP ms", "MILP/CRUNCH", "same T*", "crunch scheme ms",
                   "jbba ms", "exact ms", "jbba/optimum", "jbba/crunch"):
        table.add_column(column, justify="right")
    rng = np.random.default_rng(args.seed)
    all_agree = True
    for num_blocks, profile in PROFILES.items():
        blocks = load_profile(profile)
        for num_devices in (12, 24, 48, 96, 192):
            if num_devices < num_blocks:
                continue
            spec = PopulationSpec(num_devices=num_devices, rate_model=args.rate_model)
            instance = make_monotone(random_instance(blocks, spec, rng))[0]
            crunch_s, crunch = median_time_s(lambda: solve(instance, "crunch"), args.repeats)
            share = np.full(num_devices, instance.bandwidth_hz / num_devices)
            latency, feasible = pair_latency_s(instance, share), instance.memory_feasible()
            algorithm_s, _ = median_time_s(lambda: crunch_matching(latency, feasible), args.repeats * 4)
            milp_matching(latency, feasible)  # build the cached problem outside the timing
            milp_s, (milp_value, _) = median_time_s(lambda: milp_matching(latency, feasible), max(1, args.repeats // 2))
            jbba_s, jbba = median_time_s(lambda: solve(instance, "jbba"), args.repeats)
            exact_s, exact = median_time_s(lambda: solve(instance, "exact-bisection"), args.repeats)
            agree = abs(milp_value - crunch.round_latency_s) <= 1e-9 * crunch.round_latency_s
            all_agree &= agree
            table.add_row(str(num_blocks), str(num_devices), f"{algorithm_s * 1e3:.3f}", f"{milp_s * 1e3:.1f}",
                          f"{milp_s / algorithm_s:.0f}x", "yes" if agree else "NO", f"{crunch_s * 1e3:.2f}",
                          f"{jbba_s * 1e3:.1f}",
                          f"{exact_s * 1e3:.1f}", f"{jbba.round_latency_s / exact.round_latency_s:.4f}",
                          f"{jbba.round_latency_s / crunch.round_latency_s:.3f}")
    console = Console(width=160)
    console.print(table)
    console.print("CRUNCH and MILP: the algorithms alone on the same equal-share latency matrix (MILP: HiGHS via "
                  "cvxpy, problem built once per shape with Parameters); scheme columns: deft_ray.planners.solve")
    console.print(f"crunch and MILP objectives identical everywhere: {all_agree}")


if __name__ == "__main__":
    main()
