"""Planners: pure functions from an :class:`Instance` to a :class:`Plan` (numpy/scipy/cvxpy only).

Importing this package registers every scheme. It never imports torch or Ray. Code outside the
package imports from here, never from a submodule. The methods are described in docs/method.md.
"""

# isort: off
# registers the schemes, in the order scheme_names() and `deft-ray plan --scheme all` list them
from deft_ray.planners import crunch, jbba, baselines, exact, federated, multiblock  # noqa: F401
# isort: on
from deft_ray.planners.crunch import crunch_matching
from deft_ray.planners.feasibility import (
    check_matching_feasible,
    make_blocks_monotone,
    make_monotone,
)
from deft_ray.planners.instance import (
    DEFAULT_NOISE_PSD_W_PER_HZ,
    BlockCost,
    DeviceState,
    Instance,
)
from deft_ray.planners.matching import milp_matching
from deft_ray.planners.parsing import parse_blocks
from deft_ray.planners.plan import Evaluation, Plan, evaluate, pair_latency_s
from deft_ray.planners.rates import Channel
from deft_ray.planners.registry import (
    get_scheme,
    register_scheme,
    scheme_aliases,
    scheme_names,
    score,
    solve,
)
from deft_ray.planners.scheme import Allocation, Scheme

__all__ = [
    "DEFAULT_NOISE_PSD_W_PER_HZ",
    "Allocation",
    "BlockCost",
    "Channel",
    "DeviceState",
    "Evaluation",
    "Instance",
    "Plan",
    "Scheme",
    "check_matching_feasible",
    "crunch_matching",
    "evaluate",
    "get_scheme",
    "make_blocks_monotone",
    "make_monotone",
    "milp_matching",
    "pair_latency_s",
    "parse_blocks",
    "register_scheme",
    "scheme_aliases",
    "scheme_names",
    "score",
    "solve",
]
