"""Shared factories for planner tests: random small instances and hand-made devices."""

from __future__ import annotations

import numpy as np
import pytest

from deft_ray.planners import BlockCost, DeviceState, Instance, make_monotone

from .populations import paper_population, synthetic_blocks

#: Number of random instances the property tests run over.
NUM_RANDOM_INSTANCES = 320


def small_random_instances(count: int, seed: int) -> list[Instance]:
    """``count`` random instances with K <= 7, N <= 6, alternating the two rate models, with
    bandwidths from 0.5 to 20 MHz; some have unequal payloads, some noisy (non-monotone) compute."""
    rng = np.random.default_rng(seed)
    instances = []
    for i in range(count):
        num_blocks = int(rng.integers(1, 7))
        num_devices = int(rng.integers(num_blocks, 8))
        blocks = synthetic_blocks(num_blocks, rng, equal_payload=i % 5 != 0)
        if i % 7 == 3:  # timer noise: a measured profile need not be monotone
            blocks = tuple(BlockCost(b.compute_s * rng.uniform(0.9, 1.1), b.memory_bytes, b.payload_bits)
                           for b in blocks)
        instances.append(paper_population(blocks, num_devices, rng, bandwidth_hz=float(rng.uniform(5e5, 2e7)),
                                          rate_model=("shannon", "spectral_efficiency")[i % 2],
                                          distance_m=(50.0, float(rng.uniform(100, 1000)))))
    return instances


@pytest.fixture(scope="session")
def random_instances() -> list[Instance]:
    return small_random_instances(NUM_RANDOM_INSTANCES, seed=2024)


@pytest.fixture(scope="session")
def monotone_random_instances(random_instances) -> list[Instance]:
    return [make_monotone(instance)[0] for instance in random_instances]


def make_device(name: str = "d0", **overrides) -> DeviceState:
    fields = dict(name=name, compute_scale=1.0, memory_bytes=1e9, spectral_efficiency=2.0)
    fields.update(overrides)
    return DeviceState(**fields)


def make_instance(num_blocks: int = 3, num_devices: int = 4, **overrides) -> Instance:
    """A small hand-made instance: block n costs ``1 - 0.2 n`` s and ``(5 - n) * 1e8`` bytes."""
    blocks = tuple(BlockCost(compute_s=1.0 - 0.2 * n, memory_bytes=(5 - n) * 1e8, payload_bits=1e6)
                   for n in range(num_blocks))
    devices = tuple(make_device(f"d{k}", compute_scale=1.0 + k) for k in range(num_devices))
    fields = dict(bandwidth_hz=1e6, blocks=blocks, devices=devices)
    fields.update(overrides)
    return Instance(**fields)
