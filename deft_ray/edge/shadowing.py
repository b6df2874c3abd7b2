"""Log-normal shadowing over emulated time: each device's gain in dB as a Gauss-Markov process.

Every device carries a shadowing term ``x_k`` in dB, ``x_k ~ N(0, sigma^2)``. Between two
looks ``dt`` emulated seconds apart it follows the AR(1) (Gauss-Markov) recursion
``x' = rho x + sqrt(1 - rho^2) sigma z`` with ``rho = exp(-dt / coherence_s)`` and ``z ~ N(0, 1)``
(Gudmundson's exponential correlation), so the marginal stays ``N(0, sigma^2)`` and two looks
``dt`` apart correlate by ``rho``. A coherence of 0 draws ``x`` afresh at every look that
moves time forward (docs/method.md, "Channels and availability over time").
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: Entropy that separates the shadowing stream from the run's other seeded streams.
_STREAM = 0x5AAD


class Shadowing:
    """The shadowing of ``names``, seeded by ``seed``; ``std_db`` 0 is no shadowing."""

    def __init__(self, names: Sequence[str], *, std_db: float, coherence_s: float, seed: int):
        self.names = tuple(names)
        self.std_db, self.coherence_s = float(std_db), float(coherence_s)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM]))
        self.db = self.rng.normal(0.0, self.std_db, size=len(self.names)) if self.std_db > 0 else np.zeros(len(self.names))
        self.time_s = 0.0

    def advance_to(self, time_s: float) -> None:
        """Move the process to emulated time ``time_s`` (never backwards)."""
        dt_s = time_s - self.time_s
        if dt_s < 0:
            raise ValueError(f"shadowing cannot go back in time ({self.time_s} -> {time_s})")
        self.time_s = float(time_s)
        if self.std_db == 0 or dt_s == 0:
            return
        rho = float(np.exp(-dt_s / self.coherence_s)) if self.coherence_s > 0 else 0.0
        self.db = rho * self.db + np.sqrt(1.0 - rho * rho) * self.rng.normal(0.0, self.std_db, size=len(self.names))

    def factors(self) -> dict[str, float]:
        """Each device's linear shadowing factor ``10^(x / 10)``."""
        return {name: float(10.0 ** (db / 10.0)) for name, db in zip(self.names, self.db)}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "db": self.db.tolist(), "time_s": self.time_s}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])
        self.db = np.asarray(state["db"], dtype=float)
        self.time_s = float(state["time_s"])
