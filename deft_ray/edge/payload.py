"""How many bits an upload takes in each ``network.upload_dtype`` (docs/architecture.md,
"Compressed uploads").

A device's block gradients (or, federated, its adapter's change) travel as float32, float16,
bfloat16 or int8; int8 tensors each carry one float32 scale. The planner's payloads and the
emulated transmission time both follow from these sizes.
"""

from __future__ import annotations

from typing import Literal

UploadDtype = Literal["float32", "float16", "bfloat16", "int8"]

#: Bits per element of each upload dtype.
BITS_PER_ELEMENT: dict[str, int] = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8}
#: Bits of the per-tensor scale an int8 tensor carries (one float32).
SCALE_BITS = 32


def upload_payload_bits(float32_bits: float, dtype: str, num_tensors: int = 0) -> float:
    """The payload of ``num_tensors`` tensors that take ``float32_bits`` as float32, sent as ``dtype``."""
    scales = SCALE_BITS * num_tensors if dtype == "int8" else 0
    return float32_bits * BITS_PER_ELEMENT[dtype] / 32 + scales
