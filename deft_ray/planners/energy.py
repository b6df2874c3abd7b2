"""Per-round energy and energy budgets (docs/method.md, "Energy budgets").

Device k training block n for ``c_k tau_n`` seconds and uploading ``D_n`` bits at bandwidth ``b``
spends ``E_kn(b) = P_k c_k tau_n + p_k D_n / R_k(b)`` joules (``P_k`` its compute power, ``p_k``
its transmit power). The rate rises with ``b``, so a budget ``E_k`` holds iff ``b`` is at least the
*bandwidth floor* ``f_kn``: the bandwidth whose rate is ``D_n p_k / (E_k - P_k c_k tau_n)``
(:func:`energy_floor_hz`; infinite when the compute alone spends the budget). A pair whose floor
is above the whole band is infeasible; every other pair is feasible at any share of at least its
floor. Pure numpy (and scipy's Hungarian method for :func:`least_floor_matching`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from deft_ray.errors import InfeasibleError

if TYPE_CHECKING:
    from deft_ray.planners.instance import Instance
    from deft_ray.planners.rates import Channel

#: Relative slack of an energy budget when a plan is checked (the floor is exact to 1e-12).
ENERGY_TOLERANCE = 1e-9


def energy_floor_hz(channel: Channel, compute_s: np.ndarray, payload_bits: np.ndarray, compute_power_w: np.ndarray,
                    tx_power_w: np.ndarray, budget_j: np.ndarray) -> np.ndarray:
    """``(K, N)`` least bandwidth at which device k trains block n within its budget.

    ``compute_s`` is ``(K, N)``, ``payload_bits`` ``(N,)``, the powers and budgets ``(K,)``. The
    upload may last ``(E_k - P_k c_kn) / p_k`` seconds (unbounded without a transmit power), so the
    rate must reach ``D_n`` over that; the floor is the bandwidth of that rate (0 without a budget,
    ``inf`` where the compute alone spends the budget or the rate is past the channel's capacity).
    """
    num_devices, num_blocks = compute_s.shape
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        spare_j = budget_j[:, None] - compute_power_w[:, None] * compute_s
        transmits = tx_power_w[:, None] > 0
        upload_s = np.where(transmits, spare_j / np.where(transmits, tx_power_w[:, None], 1.0), np.inf)
        rate = np.where(spare_j < 0, np.inf, payload_bits[None, :] / upload_s)
    rate = np.where(np.isnan(rate), np.inf, rate)  # 0 / 0: no spare energy and something to send
    rows = np.broadcast_to(np.arange(num_devices)[:, None], (num_devices, num_blocks))
    floor = channel.take(rows).bandwidth_for_rate_hz(rate) if num_devices else np.zeros((0, num_blocks))
    return np.where(np.isfinite(budget_j)[:, None], floor, 0.0)


def round_energy_j(compute_power_w: np.ndarray, compute_s: np.ndarray, tx_power_w: np.ndarray,
                   upload_s: np.ndarray) -> np.ndarray:
    """Energy of a round, elementwise: ``compute_power_w * compute_s + tx_power_w * upload_s``
    (no upload, no upload energy, even at zero power)."""
    with np.errstate(invalid="ignore"):
        upload_j = np.where(np.asarray(upload_s) > 0, tx_power_w * upload_s, 0.0)
    return compute_power_w * compute_s + upload_j


def check_energy_feasible(instance: Instance) -> None:
    """Raise :class:`InfeasibleError` unless some one-block-per-device matching keeps every device
    within its energy budget (:func:`least_floor_matching` says how)."""
    least_floor_matching(instance)


def least_floor_matching(instance: Instance) -> np.ndarray:
    """The matching whose bandwidth floors sum least (``device_of_block``), a min-sum assignment
    (Hungarian method) over the feasible pairs. With the band split as floor plus an equal part of
    the rest, it is a feasible start for P2 with budgets whenever any matching is.

    Raises:
        InfeasibleError: some block has no device that can train it within budget, or even this
            matching's floors exceed the band.
    """
    feasible = instance.pair_feasible()
    floor = instance.bandwidth_floor_hz()
    for n in np.flatnonzero(~feasible.any(axis=0)):
        least = float(np.min(np.where(instance.memory_feasible()[:, n], floor[:, n], np.inf)))
        raise InfeasibleError(
            f"devices[*].energy_budget_j: no device that holds block {n} can train it within its energy budget "
            f"(the least bandwidth that would keep one within budget is {least:.4g} Hz, the band is "
            f"{instance.bandwidth_hz:.4g} Hz); raise energy_budget_j or bandwidth_hz, or lower compute_power_w")
    cap = 2.0 * instance.bandwidth_hz * instance.num_blocks + 1.0
    cost = np.where(feasible, floor, cap)
    blocks, devices = linear_sum_assignment(cost.T)
    total = float(cost[devices, blocks].sum())
    if not feasible[devices, blocks].all() or not total < instance.bandwidth_hz:
        shown = "no matching of feasible pairs exists" if total >= cap else f"the least is {total:.4g} Hz"
        raise InfeasibleError(
            f"devices[*].energy_budget_j: every matching needs more than bandwidth_hz = {instance.bandwidth_hz:.4g} "
            f"to keep each device within its energy budget ({shown}); raise energy_budget_j or bandwidth_hz")
    return devices[np.argsort(blocks)]


def floor_shares_hz(floor_hz: np.ndarray, total_hz: float) -> np.ndarray:
    """Shares of ``total_hz`` for rows of floors ``(M, J)``: each floor plus an equal part of what
    is left (feasible for the budgets; ``inf`` rows where the floors do not fit)."""
    floor_hz = np.atleast_2d(floor_hz)
    left = total_hz - floor_hz.sum(axis=1, keepdims=True)
    shares = floor_hz + left / floor_hz.shape[1]
    return np.where(left >= 0, shares, np.inf)
