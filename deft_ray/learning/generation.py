"""The server's evaluation of a causal LM: eval loss and perplexity, and exact match of greedy answers.

``eval_loss`` is the mean negative log-likelihood (nats) per response token over the whole
validation split (tokens, not examples, weigh equally), ``perplexity`` its exponential, and
``exact_match`` the share of prompts whose greedy generation, up to the end-of-sequence token and
stripped of surrounding white space, equals the reference answer.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

EVAL_BATCH_SIZE = 64


def evaluate_causal(model: Any, columns: Mapping[str, np.ndarray], generation: Any, metric_names: tuple[str, ...]
                    ) -> dict[str, float]:
    """The task's metrics in ``metric_names`` order (``exact_match`` only with a ``generation`` set),
    on the caller's torch threads (more threads than free cores slow small models many times over)."""
    loss = eval_loss(model, columns)
    scores = {"eval_loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    if generation is not None:
        scores["exact_match"] = exact_match(generate_answers(model, generation), generation.references)
    return {name: scores[name] for name in metric_names if name in scores}


def eval_loss(model: Any, columns: Mapping[str, np.ndarray]) -> float:
    """Mean negative log-likelihood per labelled token, batched by length (each batch cut to its longest)."""
    import torch

    from deft_ray.learning.batches import trim_padding

    order = np.argsort(columns["attention_mask"].sum(axis=1), kind="stable")
    total_nats, total_tokens = 0.0, 0
    for start in range(0, len(order), EVAL_BATCH_SIZE):
        rows = order[start:start + EVAL_BATCH_SIZE]
        batch = trim_padding({k: columns[k][rows] for k in ("input_ids", "attention_mask", "labels")})
        nats, tokens = model.token_loss_sums({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()})
        total_nats, total_tokens = total_nats + nats, total_tokens + tokens
    return total_nats / max(total_tokens, 1)


def generate_answers(model: Any, generation: Any) -> list[str]:
    """Greedy answers to the generation set's prompts (batched, left-padded), decoded up to the
    end-of-sequence token."""
    import torch

    tokenizer = generation.tokenizer
    answers = []
    peft_model = model.peft_model
    peft_model.eval()
    for start in range(0, len(generation.references), EVAL_BATCH_SIZE):
        ids = torch.from_numpy(np.ascontiguousarray(generation.prompt_ids[start:start + EVAL_BATCH_SIZE]))
        mask = torch.from_numpy(np.ascontiguousarray(generation.prompt_mask[start:start + EVAL_BATCH_SIZE]))
        keep = mask.any(dim=0)  # drop columns that are padding in every row of this batch
        ids, mask = ids[:, keep].to(model.device), mask[:, keep].to(model.device)
        with torch.no_grad():
            out = peft_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=generation.max_new_tokens,
                                      do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id)
        for row in out[:, ids.shape[1]:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[:row.index(tokenizer.eos_token_id)]
            answers.append(tokenizer.decode(row, skip_special_tokens=True))
    return answers


def exact_match(answers: list[str], references: tuple[str, ...] | list[str]) -> float:
    """Share of answers equal to their reference, surrounding white space ignored."""
    assert len(answers) == len(references), (len(answers), len(references))
    return float(np.mean([a.strip() == r.strip() for a, r in zip(answers, references)])) if answers else 0.0
