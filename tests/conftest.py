"""Fixtures shared by the runtime tests: a tiny model folder and a local Ray."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    from deft_ray.model import tiny_model_dir

    return tiny_model_dir(str(tmp_path_factory.mktemp("tiny-bert")), family="bert", num_layers=4, hidden_size=32)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs for the module's tests (Ray takes seconds to start)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
