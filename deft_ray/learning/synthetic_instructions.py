"""``synthetic-instructions``: generated instructions with exact answers, so demos and tests need no download.

Each example asks for one of :data:`OPERATIONS` on a short random argument, e.g. ``reverse qwert``
-> ``trewq``, ``upper qwert`` -> ``QWERT``, ``sort qwert`` -> ``eqrtw``, ``add 23 48`` -> ``71``,
``subtract 48 23`` -> ``25``. Answers are unique, so a greedy generation is scored by exact match.
"""

from __future__ import annotations

import string
from typing import Callable

import numpy as np

NUM_TRAIN, NUM_VALIDATION = 4000, 300
LETTERS = np.array(list(string.ascii_lowercase))


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(LETTERS, size=int(rng.integers(3, 7))))


def _numbers(rng: np.random.Generator) -> tuple[int, int]:
    low, high = sorted(int(x) for x in rng.integers(0, 100, size=2))
    return high, low


OPERATIONS: dict[str, tuple[Callable[[np.random.Generator], tuple], Callable[..., str]]] = {
    "reverse": (lambda rng: (_word(rng),), lambda word: word[::-1]),
    "upper": (lambda rng: (_word(rng),), lambda word: word.upper()),
    "sort": (lambda rng: (_word(rng),), lambda word: "".join(sorted(word))),
    "add": (lambda rng: _numbers(rng), lambda a, b: str(a + b)),
    "subtract": (lambda rng: _numbers(rng), lambda a, b: str(a - b)),
}
"""Operation -> (draw its arguments, compute the answer)."""


def draw_example(rng: np.random.Generator) -> tuple[str, tuple, str]:
    """One ``(operation, arguments, answer)``, the operation uniform over :data:`OPERATIONS`."""
    operation = str(rng.choice(list(OPERATIONS)))
    draw, answer = OPERATIONS[operation]
    arguments = draw(rng)
    return operation, arguments, answer(*arguments)


def _split(rng: np.random.Generator, size: int, exclude: set[str]) -> dict[str, list[str]]:
    prompts, responses = [], []
    seen = set(exclude)
    while len(prompts) < size:
        operation, arguments, answer = draw_example(rng)
        prompt = " ".join((operation, *map(str, arguments)))
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
            responses.append(answer)
    return {"prompt": prompts, "response": responses, "messages": [""] * size}


def synthetic_instructions(seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Train and validation columns (``prompt``, ``response``, ``messages``), deterministic in
    ``seed``; every prompt is distinct and none of the validation prompts is in training."""
    train_rng, validation_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train = _split(train_rng, NUM_TRAIN, set())
    return train, _split(validation_rng, NUM_VALIDATION, set(train["prompt"]))
