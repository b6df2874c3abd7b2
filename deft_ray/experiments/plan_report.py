"""Terminal rendering of plans with rich (no torch, no Ray)."""

from __future__ import annotations

from typing import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from deft_ray.planners import Instance, Plan, score


def print_plan(instance: Instance, plan: Plan, console: Console | None = None) -> None:
    """One table per plan: each involved device's blocks, bandwidth, compute, upload and total
    seconds, the bottleneck marked, and the plan's diagnostics below it."""
    console = console or Console()
    scored = score(instance, plan, plan.scheme)
    table = Table(title=f"{plan.scheme}: round latency {plan.round_latency_s:.4f} s "
                        f"(solved in {plan.solve_time_s * 1e3:.2f} ms)", title_justify="left")
    for column in ("device", "blocks", "bandwidth MHz", "compute s", "upload s", "total s", ""):
        table.add_column(column, justify="left" if column in ("device", "blocks", "") else "right")
    order = sorted(plan.assignment, key=lambda name: min(plan.assignment[name]))
    for name in order:
        mark = "bottleneck" if name == plan.bottleneck_device else ""
        table.add_row(name, _blocks(plan.assignment[name]), f"{plan.bandwidth_hz[name] / 1e6:.3f}",
                      f"{scored.compute_s[name]:.4f}", f"{scored.upload_s[name]:.4f}",
                      f"{plan.device_latency_s[name]:.4f}", mark, style="bold" if mark else None)
    console.print(table)
    for note in plan.diagnostics:
        console.print(f"  note: {note}", style="dim")


def print_plan_comparison(plans: Sequence[Plan], skipped: Mapping[str, str],
                          console: Console | None = None) -> None:
    """Every scheme's round latency, relative to the best, and its solve time."""
    console = console or Console()
    best = min(p.round_latency_s for p in plans)
    table = Table(title="schemes compared", title_justify="left")
    for column in ("scheme", "round latency s", "vs best", "solve ms", "devices used"):
        table.add_column(column, justify="left" if column == "scheme" else "right")
    for plan in sorted(plans, key=lambda p: p.round_latency_s):
        table.add_row(plan.scheme, f"{plan.round_latency_s:.4f}", f"{plan.round_latency_s / best:.3f}x",
                      f"{plan.solve_time_s * 1e3:.2f}", str(len(plan.assignment)))
    for name, reason in skipped.items():
        table.add_row(name, "-", "-", "-", "-", style="dim")
        console.print(f"  skipped {name}: {reason}", style="dim")
    console.print(table)


def _blocks(blocks: Sequence[int]) -> str:
    if len(blocks) > 2 and list(blocks) == list(range(blocks[0], blocks[-1] + 1)):
        return f"{blocks[0]}-{blocks[-1]}"
    return ",".join(str(b) for b in blocks)
