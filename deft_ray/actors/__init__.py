"""Ray actors over plain classes: devices, the planner and the coordinator.

The classes here run without Ray (tests drive them in-process); ``ray.remote`` and each device's
``.options(...)`` are applied where the actors are spawned (:mod:`deft_ray.actors.launch`).
"""
