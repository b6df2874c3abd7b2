"""Block cost profiles: reading a measured profile file, or one packaged with deft-ray, by name.

A profile lists each block's compute seconds, memory bytes and payload bits in model order
(docs/method.md, "Cost model"); ``deft-ray profile`` measures one.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from deft_ray.errors import InputError
from deft_ray.planners import BlockCost, parse_blocks

#: Profiles shipped with the package, by name.
PACKAGED_PROFILES = ("roberta-base_h200_fp32", "roberta-large_h200_fp32", "minilm-l6_cpu_fp32",
                     "tiny-llama-6x64_cpu_fp32")


def load_profile(path_or_name: str | Path) -> tuple[BlockCost, ...]:
    """Blocks of a profile file (a JSON object whose ``blocks`` list is in the Instance JSON's
    block format, in model order), by path or by the name of a packaged profile."""
    name = str(path_or_name)
    if name in PACKAGED_PROFILES:
        text = resources.files("deft_ray").joinpath("profiles", f"{name}.json").read_text()
    else:
        path = Path(name)
        if not path.is_file():
            raise InputError("profile", name, "no such file or packaged profile",
                             f"give a profile file or one of {', '.join(PACKAGED_PROFILES)}")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"profile {name} line {error.lineno}", error.msg, "not valid JSON",
                         "fix the JSON syntax there") from None
    if not isinstance(data, dict):
        raise InputError(f"profile {name}", type(data).__name__, "must be a JSON object", "give an object with blocks")
    return parse_blocks(data.get("blocks"), where=f"profile {name}: blocks")
