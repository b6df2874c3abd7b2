"""The layering: each sub-package, imported whole in a fresh interpreter, loads only what its layer may."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import deft_ray

#: Layer -> (may import torch, may import Ray).
LAYERS = {
    "deft_ray.planners": (False, False),
    "deft_ray.edge": (False, False),
    "deft_ray.config": (False, False),
    "deft_ray.experiments": (False, False),
    "deft_ray.reporting": (False, False),
    "deft_ray.learning": (True, False),
    "deft_ray.runtime": (True, False),
    "deft_ray.actors": (True, True),
}

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [sys.argv[1]] + [m.name for m in pkgutil.walk_packages(getattr(package, "__path__", []), sys.argv[1] + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "torch": "torch" in sys.modules, "ray": "ray" in sys.modules}))
"""


def loaded_by(module: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_it_may(layer):
    may_torch, may_ray = LAYERS[layer]
    loaded = loaded_by(layer)
    assert len(loaded["modules"]) > 1, loaded
    if not may_torch:
        assert not loaded["torch"], f"{layer} imported torch"
    if not may_ray:
        assert not loaded["ray"], f"{layer} imported ray"


def test_the_command_line_entry_point_is_cheap():
    loaded = loaded_by("deft_ray.cli")
    assert not loaded["torch"] and not loaded["ray"]


def test_every_sub_package_is_a_layer_with_a_purpose():
    packages = sorted(m.name for m in pkgutil.iter_modules(deft_ray.__path__) if m.ispkg)
    assert [f"deft_ray.{name}" for name in packages if name != "profiles"] == sorted(LAYERS)
    for layer in LAYERS:
        doc = __import__(layer, fromlist=["_"]).__doc__
        assert doc and doc.strip().count("\n") < 8 and doc.strip().split("\n")[0].endswith((".", ":")), layer
