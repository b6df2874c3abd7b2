"""The living edge of a run: every device's channel and availability as emulated time goes by.

One object per run holds the seeded processes (docs/method.md, "Channels and availability over
time"): shadowing (:mod:`~deft_ray.edge.shadowing`), mobility (:mod:`~deft_ray.edge.mobility`),
a channel trace (:mod:`~deft_ray.edge.channel_trace`) and availability
(:mod:`~deft_ray.edge.availability`). The coordinator moves it to each round's start with
:meth:`EdgeDynamics.advance_to`, reads the round's gains with :meth:`EdgeDynamics.gains` and asks
:attr:`EdgeDynamics.availability` who is online; its state goes into every checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from deft_ray.edge.availability import AlwaysOnline, Availability, MarkovOnOff, OnlineIntervals, read_availability_trace
from deft_ray.edge.channel_trace import ChannelTrace, read_channel_trace
from deft_ray.edge.devices import DeviceSpec
from deft_ray.edge.mobility import Mobility
from deft_ray.edge.radio import path_loss_db
from deft_ray.edge.shadowing import Shadowing

if TYPE_CHECKING:
    from deft_ray.config import RunConfig


class EdgeDynamics:
    """The channels and availability of ``specs`` (every device the run began with)."""

    def __init__(self, config: RunConfig, specs: Sequence[DeviceSpec]):
        names = [spec.name for spec in specs]
        network = config.network
        self.rayleigh = network.rayleigh_fading
        self.shadowing = Shadowing(names, std_db=network.shadowing_db, coherence_s=network.shadowing_coherence_s,
                                   seed=config.seed)
        ranges = [spec.distance_range_m or (spec.distance_m, spec.distance_m) for spec in specs]
        self.mobility = Mobility(names, start_m=[spec.distance_m for spec in specs], low_m=[r[0] for r in ranges],
                                 high_m=[r[1] for r in ranges], speed_mps=[spec.speed_mps for spec in specs],
                                 seed=config.seed)
        self.trace: ChannelTrace | None = (read_channel_trace(network.channel_trace, names)
                                           if network.channel_trace else None)
        traced = (read_availability_trace(config.reliability.availability_trace, names)
                  if config.reliability.availability_trace else {})
        self.availability = Availability({spec.name: _timeline(spec, traced, config.seed) for spec in specs})

    def advance_to(self, time_s: float) -> None:
        """Move shadowing and mobility to emulated time ``time_s``."""
        self.shadowing.advance_to(time_s)
        self.mobility.advance_to(time_s)

    def gains(self, names: Sequence[str], round_idx: int, rng: np.random.Generator | None) -> dict[str, float]:
        """Each of ``names``' channel power gain now: path loss at its distance x shadowing x
        ``|h|^2 ~ Exp(1)`` Rayleigh fading (drawn from ``rng``), or the trace's gain where it has one."""
        distance, shadow = self.mobility.distances(), self.shadowing.factors()
        gain = 10.0 ** (-path_loss_db([distance[n] for n in names]) / 10.0) * np.array([shadow[n] for n in names])
        if self.rayleigh:
            if rng is None:
                raise ValueError("Rayleigh fading needs a random generator (rng)")
            gain = gain * rng.exponential(1.0, size=len(names))
        traced = {n: self.trace.gain(n, round_idx) for n in names} if self.trace else {}
        return {n: traced.get(n) or float(g) for n, g in zip(names, gain)}

    def state_dict(self) -> dict[str, Any]:
        return {"shadowing": self.shadowing.state_dict(), "mobility": self.mobility.state_dict(),
                "availability": self.availability.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:  # a checkpoint from before the edge had a state holds none
            self.shadowing.load_state_dict(state["shadowing"])
            self.mobility.load_state_dict(state["mobility"])
            self.availability.load_state_dict(state["availability"])


def _timeline(spec: DeviceSpec, traced: Mapping[str, Sequence[tuple[float, float]]], seed: int):
    """The trace's intervals for a device it names, else its group's Markov process, else always online."""
    if spec.name in traced:
        return OnlineIntervals(traced[spec.name])
    if spec.mean_online_s is not None and spec.mean_offline_s is not None:
        return MarkovOnOff(spec.name, mean_online_s=spec.mean_online_s, mean_offline_s=spec.mean_offline_s, seed=seed)
    return AlwaysOnline()
