"""JBBA: joint bandwidth-and-block allocation by dual ascent (PAPER.md sections 3.2 and 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment, newton

from deft_ray.planners.crunch import crunch_matching, is_depth_monotone
from deft_ray.planners.bandwidth import bandwidth_needed_hz, optimal_bandwidth_for
from deft_ray.planners.matching import bottleneck_matching
from deft_ray.planners.problem import Channel, Instance, pair_latency_s
from deft_ray.planners.registry import register_scheme
from deft_ray.planners.scheme import Allocation, Scheme, matching_allocation

#: Cost standing in for a forbidden pair in the Hungarian step (costs are normalised to ~1).
_FORBIDDEN = 1e9


def project_to_simplex(values: np.ndarray, *, floor: float = 0.0) -> np.ndarray:
    """Euclidean projection onto ``{x >= floor, sum x = 1}`` (sort-based, O(K log K))."""
    radius = 1.0 - floor * values.size
    shifted = (values - floor) / radius
    ordered = np.sort(shifted)[::-1]
    cumulative = np.cumsum(ordered) - 1.0
    ranks = np.arange(1, values.size + 1)
    last = ranks[ordered - cumulative / ranks > 0][-1]
    return floor + radius * np.maximum(shifted - cumulative[last - 1] / last, 0.0)


class BandwidthStep:
    """The per-device bandwidth sub-problem of the split Lagrangian (PAPER.md section 5.4).

    For dual weights ``lam_k`` and the bandwidth price ``mu``, each pair (device k, payload D)
    solves ``min_beta lam_k * upload_k(beta) + mu * beta`` over its fraction ``beta`` of the total
    bandwidth, with ``upload_k(beta) = D / R_k(beta * B)`` in units of the reference latency.

    - Fixed spectral efficiency ``s_k``: ``upload = a / beta`` with ``a = D / (s_k B)``, so
      ``beta* = sqrt(lam a / mu)`` and the value is ``2 sqrt(lam mu a)`` (closed form).
    - Shannon: the first-order condition ``lam * D B R'(b) / R(b)^2 = mu`` (``b = beta B``) has a
      decreasing left side, so its root is found by a bracketing search on ``log b``.

    Payloads are usually equal across blocks, so the sub-problem is solved once per distinct
    payload, not per block.
    """

    def __init__(self, channel: Channel, payload_bits: np.ndarray, total_hz: float, unit_s: float):
        self.payloads, self.payload_index = np.unique(payload_bits, return_inverse=True)
        self.channel = channel
        self.total_hz = total_hz
        self.unit_s = unit_s
        self.linear = channel.is_linear
        self._previous_log_b: dict[bytes, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            self.linear_unit = self.payloads[None, :] / (channel.spectral_efficiency[:, None] * total_hz * unit_s)

    def upload(self, beta: np.ndarray, payload: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Upload time (in reference units) of devices ``rows`` sending ``payload`` at fractions
        ``beta``; ``rows`` broadcasts against ``beta``."""
        rate = self.channel.take(rows).rate_bps(beta * self.total_hz)
        with np.errstate(divide="ignore"):
            return payload / (rate * self.unit_s)

    def solve(self, lam: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
        """``(beta*, value)`` per device and distinct payload, shape ``(K, U)``."""
        lam_column = lam[:, None]
        with np.errstate(invalid="ignore"):
            beta = np.sqrt(lam_column * self.linear_unit / mu)
        if not self.linear.all():
            shannon = np.flatnonzero(~self.linear & (lam > 0))
            if shannon.size:
                beta[shannon] = self._shannon_beta(shannon, lam[shannon], mu)
            beta[~self.linear & (lam <= 0)] = 0.0
        beta = np.nan_to_num(beta, nan=0.0)
        upload = self.upload(beta, self.payloads[None, :], np.arange(lam.size)[:, None])
        with np.errstate(invalid="ignore"):
            value = np.where(lam_column > 0, lam_column * upload, 0.0) + mu * beta
        return beta, value

    def _shannon_beta(self, rows: np.ndarray, lam: np.ndarray, mu: float) -> np.ndarray:
        shape = (rows.size, self.payloads.size)
        args = (np.broadcast_to(self.channel.snr_hz[rows][:, None], shape),
                np.broadcast_to(self.payloads[None, :], shape),
                np.broadcast_to(np.log(mu / lam)[:, None], shape),
                self.total_hz / self.unit_s)
        # The left side is close to linear in log b (slope about -2), so Newton's method from the
        # previous solution converges in a few steps.
        start = self._previous_log_b.get(rows.tobytes())
        if start is None:
            start = np.full(shape, math.log(self.total_hz / rows.size))
        log_b = newton(_log_marginal_gain, start, fprime=_log_marginal_gain_slope, args=args,
                       tol=1e-10, maxiter=100)
        self._previous_log_b[rows.tobytes()] = log_b
        return np.exp(log_b) / self.total_hz


def _log_marginal_gain(log_b: np.ndarray, snr_hz: np.ndarray, payload_bits: np.ndarray,
                       log_price: np.ndarray, total_per_unit: float) -> np.ndarray:
    """``log(D B R'(b) / (R(b)^2 unit)) - log(mu / lam)`` for Shannon ``R(b) = b log2(1 + g / b)``:
    the log of the upload time saved per unit of bandwidth fraction, minus the log price; it falls
    as ``b`` grows, and its root is the optimal bandwidth."""
    b = np.exp(log_b)
    spectral = np.log2(1.0 + snr_hz / b)
    slope = spectral - snr_hz / ((b + snr_hz) * math.log(2))
    return np.log(payload_bits * total_per_unit * slope / (b * spectral) ** 2) - log_price


def _log_marginal_gain_slope(log_b: np.ndarray, snr_hz: np.ndarray, *_) -> np.ndarray:
    """Derivative of :func:`_log_marginal_gain` in ``log b``."""
    b = np.exp(log_b)
    ln2 = math.log(2)
    spectral = np.log2(1.0 + snr_hz / b)
    slope = spectral - snr_hz / ((b + snr_hz) * ln2)
    curvature = -(snr_hz**2) / (b * (b + snr_hz) ** 2 * ln2)  # R''(b)
    return b * curvature / slope - 2.0 * slope / spectral


@register_scheme
class Jbba(Scheme):
    """JBBA: joint block and bandwidth allocation by dual ascent on the split Lagrangian.

    Problem (P2, PAPER.md section 3.2): choose the matching x (each block to its own device,
    memory respected) and the shares B_k (sum <= B) minimising the round latency T. Dualising the
    per-device latency constraints (weights ``lam`` on the simplex) and the bandwidth budget
    (price ``mu``) splits the Lagrangian (section 5.2) into

    - a bandwidth step per device, in closed form for fixed spectral efficiency and a 1-D convex
      solve for Shannon (:class:`BandwidthStep`), and
    - a block step, a rectangular min-sum assignment of ``lam_k t_kn + phi_k`` solved by the
      Hungarian method (``scipy.optimize.linear_sum_assignment``).

    CRUNCH helps (section 5.3): its equal-share matching is the starting point and first upper
    bound, and pairs whose compute time alone exceeds the best latency found are cut from the
    Hungarian step, as are memory-infeasible pairs. Every matching visited is turned into a
    feasible plan by primal recovery (latency-equalising bandwidth, section 5.5) and the best one
    is kept. ``lam`` moves by projected supergradient steps ``eta0 / sqrt(i)`` on the normalised
    device latencies and ``mu`` multiplicatively on the bandwidth excess; the dual value is a lower
    bound on the optimum, so the gap is reported in the diagnostics.

    Guarantee: feasible, and never worse than CRUNCH followed by optimal bandwidth (so never worse
    than ``crunch``); within the reported dual gap of the optimum (P2 has integer variables, so the
    gap need not close).
    Complexity: O(I (N^2 K + K U S)) for I iterations, U distinct payloads and S root-search steps
    (Shannon only), plus one O(N J) equalisation per distinct matching visited.
    """

    name = "jbba"
    summary = "joint block + bandwidth allocation (JBBA): dual ascent, Hungarian + closed-form bandwidth"

    def __init__(self, *, max_iterations: int = 300, initial_step: float = 0.5, patience: int = 25,
                 gap_tolerance: float = 1e-4, weight_floor: float = 1e-3, crunch_polish: bool = True):
        self.max_iterations = max_iterations
        self.initial_step = initial_step
        self.patience = patience
        self.gap_tolerance = gap_tolerance
        self.weight_floor = weight_floor
        self.crunch_polish = crunch_polish

    def allocate(self, instance: Instance, *, seed: int) -> Allocation:
        num_devices, num_blocks = instance.num_devices, instance.num_blocks
        blocks = np.arange(num_blocks)
        compute = instance.compute_matrix_s()
        feasible = instance.memory_feasible()
        payload = instance.block_payload_bits()

        equal = pair_latency_s(instance, np.full(num_devices, instance.bandwidth_hz / num_devices))
        start = _bottleneck(equal, feasible)
        latency, bandwidth = optimal_bandwidth_for(instance, start)
        best = _Best(float(latency[0]), start, bandwidth[0])
        visited = {start.tobytes()}
        channel = instance.channel()

        def recover(match: np.ndarray, iteration: int) -> None:
            """Primal recovery: optimal bandwidth for a matching not seen before; keep the best."""
            if match.tobytes() in visited:
                return
            visited.add(match.tobytes())
            # One evaluation rules most matchings out: if they cannot meet the best latency found
            # with the whole band, the root search for their optimal bandwidth is not needed.
            need = bandwidth_needed_hz(channel.take(match), compute[match, blocks], payload, best.latency_s)
            if need.sum() > instance.bandwidth_hz:
                return
            latency, bandwidth = optimal_bandwidth_for(instance, match)
            if latency[0] < best.latency_s * (1 - 1e-12):
                best.latency_s, best.match, best.bandwidth_hz, best.iteration = float(latency[0]), match, bandwidth[0], iteration

        unit_s = best.latency_s
        compute_unit = compute / unit_s
        step = BandwidthStep(instance.channel(), payload, instance.bandwidth_hz, unit_s)
        floor = self.weight_floor / num_devices
        lam = project_to_simplex(np.where(feasible.any(axis=1), 1.0, 0.0) / feasible.any(axis=1).sum(), floor=floor)
        mu = self._initial_price(step, lam, start, num_blocks)
        best_dual = -math.inf
        iteration = 0
        for iteration in range(1, self.max_iterations + 1):
            beta, value = step.solve(lam, mu)
            allowed = feasible & (compute < best.latency_s)
            weight = np.where(allowed, lam[:, None] * compute_unit + value[:, step.payload_index], _FORBIDDEN)
            rows, devices = linear_sum_assignment(weight.T)
            match = devices[np.argsort(rows)]
            best_dual = max(best_dual, float(weight[match, blocks].sum() - mu))
            recover(match, iteration)
            if self.crunch_polish:
                # CRUNCH at the dual iterate's bandwidth of every device (PAPER.md A10).
                share = beta[:, step.payload_index].mean(axis=1) * instance.bandwidth_hz
                polished = _bottleneck(pair_latency_s(instance, share), allowed)
                if polished is not None:
                    recover(polished, iteration)
            if best.latency_s / unit_s - best_dual <= self.gap_tolerance * best.latency_s / unit_s:
                break
            if iteration - best.iteration >= self.patience:
                break

            beta_used = beta[match, step.payload_index]
            device_latency = np.zeros(num_devices)
            device_latency[match] = compute_unit[match, blocks] + step.upload(beta_used, payload, match)
            eta = self.initial_step / math.sqrt(iteration)
            lam = project_to_simplex(lam + eta * device_latency / device_latency.max(), floor=floor)
            mu *= math.exp(eta * (beta_used.sum() - 1.0))

        gap = max(0.0, 1.0 - best_dual * unit_s / best.latency_s)
        notes = (f"jbba: {iteration} iterations, {len(visited)} matchings visited, dual gap <= {gap:.2%}",)
        return matching_allocation(best.match, best.bandwidth_hz, notes)

    @staticmethod
    def _initial_price(step: BandwidthStep, lam: np.ndarray, start: np.ndarray, num_blocks: int) -> float:
        """The price at which the initial weights ask for the whole band, for linear channels
        ``mu = (sum_k sqrt(lam_k a_k))^2``; Shannon devices use their rate at an equal share."""
        equal_upload = step.upload(np.full(num_blocks, 1.0 / num_blocks), step.payloads[step.payload_index], start)
        unit = equal_upload / num_blocks
        return float(np.sum(np.sqrt(lam[start] * unit)) ** 2)


@dataclass(slots=True)
class _Best:
    """The best feasible plan found so far, and the iteration that found it."""

    latency_s: float
    match: np.ndarray
    bandwidth_hz: np.ndarray
    iteration: int = 0


def _bottleneck(latency_s: np.ndarray, feasible: np.ndarray) -> np.ndarray | None:
    """CRUNCH where its structure holds, the generic bottleneck matching otherwise."""
    if is_depth_monotone(latency_s, feasible):
        return crunch_matching(latency_s, feasible)
    return bottleneck_matching(latency_s, feasible)
