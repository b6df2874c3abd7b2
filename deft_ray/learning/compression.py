"""Compressed uploads: a device's tensors sent as float16, bfloat16 or int8, and restored to
float32 at the server (docs/architecture.md, "Compressed uploads").

- float16 and bfloat16 round to nearest (relative error at most 2**-11 and 2**-8 for values in
  their normal range; float16 overflows past 65504);
- int8 scales each tensor by ``s = max |x| / 127`` and rounds ``x / s`` stochastically (up with
  probability equal to the fraction), so the restored value is unbiased, ``E[q s] = x``, and off by
  less than ``s``. The rounding is seeded, so a run is reproducible.

bfloat16 has no numpy dtype: its bits travel as int16 and are reinterpreted on restore. The
payload is what the arrays take (plus 32 bits per int8 scale), the sizes of
:mod:`deft_ray.edge.payload`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from deft_ray.edge.payload import SCALE_BITS

#: Largest magnitude of an int8 code (symmetric, so -128 is never used).
INT8_LEVELS = 127


def compress(tensors: Mapping[str, np.ndarray], dtype: str, *, seed: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``tensors`` (float32) as ``dtype``: the arrays that travel and, for int8, each one's scale.
    ``seed`` seeds int8's stochastic rounding."""
    import torch

    arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in tensors.items()}
    if dtype == "float32":
        return arrays, {}
    if dtype == "float16":
        return {name: value.astype(np.float16) for name, value in arrays.items()}, {}
    if dtype == "bfloat16":
        return {name: torch.from_numpy(value).to(torch.bfloat16).view(torch.int16).numpy()
                for name, value in arrays.items()}, {}
    if dtype != "int8":
        raise ValueError(f"unknown upload dtype {dtype!r}")
    generator = torch.Generator().manual_seed(int(seed))
    codes, scales = {}, {}
    for name in sorted(arrays):
        value = torch.from_numpy(arrays[name])
        peak = float(value.abs().max()) if value.numel() else 0.0
        scale = np.float32(peak / INT8_LEVELS) if peak > 0 else np.float32(1.0)
        noise = torch.rand(value.shape, generator=generator, dtype=torch.float32)
        code = torch.floor(value / float(scale) + noise).clamp_(-INT8_LEVELS, INT8_LEVELS)
        codes[name], scales[name] = code.to(torch.int8).numpy(), float(scale)
    return codes, scales


def restore(arrays: Mapping[str, np.ndarray], dtype: str, scales: Mapping[str, float]) -> dict[str, np.ndarray]:
    """The float32 tensors that :func:`compress` sent as ``arrays``."""
    import torch

    if dtype == "bfloat16":
        return {name: torch.from_numpy(np.ascontiguousarray(value)).view(torch.bfloat16).float().numpy()
                for name, value in arrays.items()}
    if dtype == "int8":
        return {name: value.astype(np.float32) * np.float32(scales[name]) for name, value in arrays.items()}
    return {name: np.asarray(value, dtype=np.float32) for name, value in arrays.items()}


def payload_bits(arrays: Mapping[str, np.ndarray], scales: Mapping[str, float]) -> float:
    """Bits the upload takes: its arrays' bytes, plus one float32 per int8 scale."""
    return float(sum(value.size * value.itemsize * 8 for value in arrays.values()) + SCALE_BITS * len(scales))
