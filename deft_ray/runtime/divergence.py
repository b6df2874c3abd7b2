"""Noticing that training diverged, before the step that would make it worse is taken."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from deft_ray.runtime.records import BlockUpload
from deft_ray.runtime.round_kinds import RoundError


class DivergenceError(RoundError):
    """Training diverged: a non-finite loss or gradient, or a loss far above where training began.

    Example scenario: ``optimizer.lr: 1000``; the loss goes 0.69, 2511, 44159, ...
    """


@dataclass
class DivergenceGuard:
    """Checks each round's uploads before they are applied (``reliability.max_loss_growth``)."""

    max_loss_growth: float | None
    """Stop once a round's mean loss exceeds this multiple of the first round's (``None``: never)."""
    lr: float
    first_loss: float | None = None

    def check(self, round_idx: int, uploads: Sequence[BlockUpload]) -> None:
        """Raise :class:`DivergenceError` naming the round and the likely cause."""
        fix = f"the learning rate is the likely cause: lower optimizer.lr (now {self.lr:g})"
        losses = [upload.loss for upload in uploads]
        loss = float(np.mean(losses)) if losses else math.nan
        if not math.isfinite(loss):
            raise DivergenceError(f"round {round_idx}: the training loss is {loss} (not finite); {fix}.")
        for upload in uploads:
            for name, tensor in upload.tensors.items():
                if not np.isfinite(tensor).all():
                    raise DivergenceError(f"round {round_idx}: device {upload.device} sent a non-finite "
                                          f"{'gradient' if upload.kind == 'gradients' else 'update'} for {name}; {fix}.")
        if self.first_loss is None:
            self.first_loss = loss
        elif self.max_loss_growth is not None and loss > self.max_loss_growth * self.first_loss:
            raise DivergenceError(f"round {round_idx}: the training loss {loss:.4g} is {loss / self.first_loss:.3g}x "
                                  f"the first round's ({self.first_loss:.4g}), above reliability.max_loss_growth = "
                                  f"{self.max_loss_growth:g}; {fix}, or raise max_loss_growth.")
