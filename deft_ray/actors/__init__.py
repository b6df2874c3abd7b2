"""The only layer that imports Ray: device and planner actors, device pools, placement, launch and timeouts.

The classes here run without Ray (tests drive them in-process); ``ray.remote`` and each device's
``.options(...)`` are applied where the actors are spawned (:mod:`deft_ray.actors.launch`).
"""
