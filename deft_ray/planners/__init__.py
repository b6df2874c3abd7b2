"""Planners: pure functions from an :class:`Instance` to a :class:`Plan` (numpy/scipy/cvxpy only).

Importing this package registers every scheme. It never imports torch or Ray.
"""

from deft_ray.planners import crunch, jbba, baselines, exact, federated, multiblock  # noqa: F401  (registers the schemes)
from deft_ray.planners.problem import (BlockCost, Channel, DeviceState, Evaluation, Instance, Plan,
                                       evaluate, make_monotone)
from deft_ray.planners.registry import get_scheme, register_scheme, scheme_names, solve
from deft_ray.planners.scheme import Allocation, Scheme

__all__ = [
    "Allocation", "BlockCost", "Channel", "DeviceState", "Evaluation", "Instance", "Plan", "Scheme",
    "evaluate", "get_scheme", "make_monotone", "register_scheme", "scheme_names", "solve",
]
