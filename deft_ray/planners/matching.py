"""Matching solvers with no structure assumed: the references CRUNCH is checked against.

- :func:`bottleneck_matching`: generic bottleneck assignment (threshold search with a
  Hopcroft-Karp check), for any latency matrix.
- :func:`milp_matching`: the same problem as a mixed-integer programme in cvxpy (HiGHS).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

#: Largest number of assignments an exhaustive search (``optimal-sets``) enumerates.
MAX_ENUMERATED_MATCHINGS = 200_000


def bottleneck_matching(latency_s: np.ndarray, feasible: np.ndarray) -> np.ndarray | None:
    """Generic linear bottleneck assignment: each block to its own device, minimising the largest
    latency used. Binary search over the sorted candidate latencies; each check is a maximum
    bipartite matching (Hopcroft-Karp, ``scipy.sparse.csgraph``). No structure assumed.

    Pairs of infinite latency are never used.
    Complexity: O(log(KN) * E sqrt(K + N)), E <= KN. Returns ``device_of_block`` or ``None``.
    """
    num_blocks = latency_s.shape[1]
    feasible = feasible & np.isfinite(latency_s)
    candidates = np.unique(latency_s[feasible])

    def matching(threshold_s: float) -> np.ndarray | None:
        graph = csr_matrix((feasible & (latency_s <= threshold_s)).T.astype(np.int8))
        device_of_block = maximum_bipartite_matching(graph, perm_type="column")
        return device_of_block if np.all(device_of_block >= 0) else None

    if candidates.size == 0 or num_blocks > latency_s.shape[0] or matching(candidates[-1]) is None:
        return None
    low, high = 0, candidates.size - 1
    while low < high:
        middle = (low + high) // 2
        if matching(candidates[middle]) is not None:
            high = middle
        else:
            low = middle + 1
    return matching(candidates[high])


@functools.lru_cache(maxsize=16)
def _milp_problem(num_devices: int, num_blocks: int):
    import cvxpy as cp  # slow to import; only the MILP needs it

    latency = cp.Parameter((num_devices, num_blocks), nonneg=True, name="latency_s")
    allowed = cp.Parameter((num_devices, num_blocks), nonneg=True, name="allowed")
    choose = cp.Variable((num_devices, num_blocks), boolean=True, name="x")
    bottleneck = cp.Variable(name="T")
    problem = cp.Problem(cp.Minimize(bottleneck), [
        cp.sum(choose, axis=0) == 1,
        cp.sum(choose, axis=1) <= 1,
        choose <= allowed,
        cp.multiply(latency, choose) <= bottleneck,
    ])
    return problem, latency, allowed, choose


def milp_matching(latency_s: np.ndarray, feasible: np.ndarray, *, solver: str = "HIGHS") -> tuple[float, np.ndarray] | None:
    """P1 as a mixed-integer linear programme, solved through cvxpy by ``solver`` (HiGHS by default; ``SCIPY`` runs HiGHS
    through ``scipy.optimize.milp``, slower but without HiGHS's console banner)::

        min T  s.t.  sum_k x_kn = 1,  sum_n x_kn <= 1,  x_kn <= feasible_kn,  t_kn x_kn <= T,
                     x binary.

    The problem is built once per shape with ``cp.Parameter`` data (DPP) and re-solved.
    Returns ``(T*, device_of_block)`` or ``None`` when infeasible.
    """
    import cvxpy as cp

    problem, latency, allowed, choose = _milp_problem(*latency_s.shape)
    latency.value = np.where(feasible, latency_s, 0.0)
    allowed.value = feasible.astype(float)
    problem.solve(solver=solver)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return None
    device_of_block = np.argmax(choose.value, axis=0)
    return float(latency_s[device_of_block, np.arange(latency_s.shape[1])].max()), device_of_block
