"""How long the driver and the coordinator wait for Ray, each overridable by the environment.

Every blocking ``ray.get`` and ``ray.wait`` in deft-ray uses one of these (or the run's
``round_timeout_s``), so nothing waits forever on a device that is gone.
"""

from __future__ import annotations

import os

DEVICE_STARTUP_TIMEOUT_S = float(os.environ.get("DEFT_RAY_STARTUP_TIMEOUT_S", "600"))
"""Seconds to wait for device actors to build their models."""
PLAN_TIMEOUT_S = float(os.environ.get("DEFT_RAY_PLAN_TIMEOUT_S", "120"))
"""Seconds to wait for one plan."""
CONTROL_TIMEOUT_S = float(os.environ.get("DEFT_RAY_CONTROL_TIMEOUT_S", "120"))
"""Seconds to wait for a device's bookkeeping call (stream state, memory, pid)."""
PLACEMENT_TIMEOUT_S = float(os.environ.get("DEFT_RAY_PLACEMENT_TIMEOUT_S", "60"))
"""Seconds to wait for the devices' placement group."""
RECORD_TIMEOUT_S = 60.0
"""Seconds to fetch a round record the coordinator actor has already produced."""
