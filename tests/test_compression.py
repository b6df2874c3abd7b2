"""Compressed uploads (docs/architecture.md, "Compressed uploads"): round-trip errors within each
dtype's bound, int8's stochastic rounding unbiased and seeded, and the payload each dtype takes."""

from __future__ import annotations

import numpy as np
import pytest

from deft_ray.edge.payload import upload_payload_bits
from deft_ray.learning.compression import compress, payload_bits, restore


def gradients(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": (rng.standard_normal((16, 8)) * 1e-3).astype(np.float32),
            "b": (rng.standard_normal(40) * 3.0).astype(np.float32),
            "zeros": np.zeros(5, dtype=np.float32)}


@pytest.mark.parametrize("dtype, relative, subnormal", [("float32", 0.0, 0.0), ("float16", 2.0 ** -11, 2.0 ** -25),
                                                        ("bfloat16", 2.0 ** -8, 0.0)])
def test_float_round_trips_within_the_dtypes_rounding(dtype, relative, subnormal):
    """Round to nearest: half a unit in the last place, relative; float16's subnormals (below
    2**-14) are spaced 2**-24 apart, so there the error is at most 2**-25."""
    tensors = gradients()
    arrays, scales = compress(tensors, dtype, seed=0)
    back = restore(arrays, dtype, scales)
    assert scales == {}
    for name, value in tensors.items():
        assert back[name].dtype == np.float32
        assert np.all(np.abs(back[name] - value) <= relative * np.abs(value) + subnormal), name


def test_int8_round_trip_is_off_by_less_than_one_step_of_its_scale():
    tensors = gradients()
    arrays, scales = compress(tensors, "int8", seed=1)
    back = restore(arrays, "int8", scales)
    for name, value in tensors.items():
        assert arrays[name].dtype == np.int8
        step = np.abs(value).max() / 127
        assert np.all(np.abs(back[name] - value) <= step * (1 + 1e-6)), name
    assert np.all(back["zeros"] == 0)


def test_int8_stochastic_rounding_is_unbiased_and_seeded():
    value = {"x": np.linspace(-1.0, 1.0, 257, dtype=np.float32) * 0.37}
    draws = 4000
    mean = np.mean([restore(*_int8(value, seed))["x"] for seed in range(draws)], axis=0)
    step = 0.37 / 127
    # each draw is off by less than a step, so its standard deviation is at most step / 2
    assert np.abs(mean - value["x"]).max() < 5 * (step / 2) / np.sqrt(draws)
    # and round-to-nearest would be biased by up to half a step on these values
    assert np.abs(np.round(value["x"] / step) * step - value["x"]).max() > 50 * (step / 2) / np.sqrt(draws)
    same = compress(value, "int8", seed=7)[0]["x"]
    assert np.array_equal(same, compress(value, "int8", seed=7)[0]["x"])
    assert not np.array_equal(same, compress(value, "int8", seed=8)[0]["x"])


def _int8(value, seed):
    arrays, scales = compress(value, "int8", seed=seed)
    return arrays, "int8", scales


@pytest.mark.parametrize("dtype, bits", [("float32", 32), ("float16", 16), ("bfloat16", 16), ("int8", 8)])
def test_payload_bits_follow_the_dtype(dtype, bits):
    tensors = gradients()
    elements = sum(value.size for value in tensors.values())  # 128 + 40 + 5
    arrays, scales = compress(tensors, dtype, seed=0)
    expected = elements * bits + (32 * len(tensors) if dtype == "int8" else 0)
    assert payload_bits(arrays, scales) == expected
    assert upload_payload_bits(elements * 32, dtype, len(tensors)) == expected
