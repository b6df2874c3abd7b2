"""How fast and how good are the planners? (issues: planning core, #12)

For N in 12, 24 blocks (the RoBERTa-base and -large H200 profiles) and K from N up to 1000 devices
(paper-like populations: path loss 128.1 + 37.6 log10(d/km) dB, 23 dBm, -174 dBm/Hz, compute
scales U[1, 5], memory U[m_min, 1.2 m_max]), prints two tables.

Solve times, on one population per size (``--rate-model`` rates, default Shannon):

- the matching at fixed equal bandwidth, solved by the CRUNCH algorithm (``crunch_matching``) and
  by the cvxpy MILP (``milp_matching``) on the same latency matrix, their speed ratio and whether
  their bottlenecks agree (MILP up to K = 192 only: it takes seconds beyond);
- the ``crunch``, ``jbba`` and ``exact`` schemes through ``deft_ray.planners.solve`` (profile
  smoothing, feasibility check and scoring included), and the ratio jbba / exact.

Quality, on ``--populations`` populations per size cycling through both rate models, with and
without Rayleigh fading, at 1-20 MHz: JBBA's gap to the exact optimum (mean and max), the same for
the paper's dual ascent alone (no exchange or assignment polish), and CRUNCH's.

Times are medians over repeats measured in this one run (this machine is shared and noisy, so
compare ratios, not absolute times).

    python benchmarks/planners.py [--repeats 5] [--populations 20] [--rate-model shannon|spectral_efficiency]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from deft_ray.edge.profiles import load_profile
from deft_ray.edge.scenario import PopulationSpec, random_instance
from deft_ray.planners import (
    crunch_matching,
    get_scheme,
    make_monotone,
    milp_matching,
    pair_latency_s,
    solve,
)

PROFILES = {12: "roberta-base_h200_fp32", 24: "roberta-large_h200_fp32"}
DEVICE_COUNTS = (12, 24, 48, 96, 192, 500, 1000)
#: Largest K for which the MILP is timed.
MILP_LIMIT = 192
RATE_MODELS = ("shannon", "spectral_efficiency")


def median_time_s(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def gap_row(blocks, num_devices: int, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gaps to the exact optimum of jbba, of the dual ascent alone and of crunch on ``count``
    paper-like populations."""
    dual_only = get_scheme("jbba", exchange_polish=False, assignment_steps=0)
    gaps: dict[str, list[float]] = {"jbba": [], "dual": [], "crunch": []}
    for i in range(count):
        spec = PopulationSpec(num_devices=num_devices, rate_model=RATE_MODELS[i % 2], rayleigh=bool((i // 2) % 2),
                              bandwidth_hz=float(rng.uniform(1e6, 2e7)))
        instance = random_instance(blocks, spec, rng)
        optimum = solve(instance, "exact").round_latency_s
        for name, scheme in (("jbba", "jbba"), ("dual", dual_only), ("crunch", "crunch")):
            gaps[name].append(solve(instance, scheme).round_latency_s / optimum - 1)
    return {name: np.array(values) for name, values in gaps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--populations", type=int, default=20, help="paper-like populations per size for the gaps")
    parser.add_argument("--rate-model", default="shannon", choices=RATE_MODELS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    times = Table(title=f"planner solve times ({args.rate_model} rates, median of {args.repeats})")
    for column in ("N", "K", "CRUNCH ms", "MILP ms", "MILP/CRUNCH", "same T*", "crunch scheme ms",
                   "jbba ms", "exact ms", "jbba/exact time"):
        times.add_column(column, justify="right")
    quality = Table(title=f"gap to the exact optimum over {args.populations} paper-like populations per size "
                          "(both rate models, with and without fading, 1-20 MHz)")
    for column in ("N", "K", "jbba mean", "jbba max", "dual ascent alone mean", "dual ascent alone max",
                   "crunch mean", "crunch max"):
        quality.add_column(column, justify="right")
    rng = np.random.default_rng(args.seed)
    all_agree = True
    worst_ratio = np.inf
    for num_blocks, profile in PROFILES.items():
        blocks = load_profile(profile)
        for num_devices in DEVICE_COUNTS:
            if num_devices < num_blocks:
                continue
            spec = PopulationSpec(num_devices=num_devices, rate_model=args.rate_model)
            instance = make_monotone(random_instance(blocks, spec, rng))[0]
            crunch_s, crunch = median_time_s(lambda: solve(instance, "crunch"), args.repeats)
            latency, feasible = pair_latency_s(instance, instance.equal_shares_hz()), instance.memory_feasible()
            algorithm_s, _ = median_time_s(lambda: crunch_matching(latency, feasible), args.repeats * 4)
            if num_devices <= MILP_LIMIT:
                milp_matching(latency, feasible)  # build the cached problem outside the timing
                milp_s, (milp_value, _) = median_time_s(lambda: milp_matching(latency, feasible),
                                                        max(1, args.repeats // 2))
                agree = abs(milp_value - crunch.round_latency_s) <= 1e-9 * crunch.round_latency_s
                all_agree &= agree
                milp_cells = (f"{milp_s * 1e3:.1f}", f"{milp_s / algorithm_s:.0f}x", "yes" if agree else "NO")
            else:
                milp_cells = ("-", "-", "-")
            jbba_s, _ = median_time_s(lambda: solve(instance, "jbba"), args.repeats)
            exact_s, _ = median_time_s(lambda: solve(instance, "exact"), args.repeats)
            worst_ratio = min(worst_ratio, jbba_s / exact_s)
            times.add_row(str(num_blocks), str(num_devices), f"{algorithm_s * 1e3:.3f}", *milp_cells,
                          f"{crunch_s * 1e3:.2f}", f"{jbba_s * 1e3:.1f}", f"{exact_s * 1e3:.1f}",
                          f"{jbba_s / exact_s:.1f}x")
            gaps = gap_row(blocks, num_devices, args.populations, rng)
            # gaps below zero are rounding (|gap| < 1e-12): shown as 0
            quality.add_row(str(num_blocks), str(num_devices),
                            *(f"{max(f(gaps[name]), 0.0):.4%}" for name in ("jbba", "dual", "crunch")
                              for f in (np.mean, np.max)))
    console = Console(width=180)
    console.print(times)
    console.print("CRUNCH and MILP: the algorithms alone on the same equal-share latency matrix (MILP: HiGHS via "
                  "cvxpy, problem built once per shape with Parameters); scheme columns: deft_ray.planners.solve")
    console.print(f"crunch and MILP objectives identical everywhere: {all_agree}; "
                  f"exact is faster than jbba by at least {worst_ratio:.1f}x at every size")
    console.print(quality)
    console.print("dual ascent alone: jbba with exchange_polish=False, assignment_steps=0 (the paper's method)")


if __name__ == "__main__":
    main()
