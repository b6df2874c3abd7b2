"""Rendering causal-LM examples with the tokenizer and tokenising them; the loss falls on the response.

A prompt is rendered with the tokenizer's chat template when it has one (the prompt as the user's
turn, or a chat's own turns, then the generation prompt), else as ``### Instruction:`` /
``### Response:`` text (Alpaca's layout). The response follows with the end-of-sequence token.
Labels copy the input ids on response tokens and are ``-100`` on the prompt and the padding, so
the model's loss is the mean negative log-likelihood of the responses. The ``text`` task has no
prompt: every token is learned.

Rows are padded on the right to ``max_length`` (batches are cut to their longest example later);
an over-long example keeps the end of its prompt and the start of its response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from deft_ray.errors import InputError
from deft_ray.learning.tasks import TaskData

if TYPE_CHECKING:
    import datasets

IGNORE_INDEX = -100
"""Label of a token that carries no loss (prompt, padding), as Hugging Face's loss expects."""
ALPACA_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


@dataclass(frozen=True)
class GenerationSet:
    """Validation prompts to answer greedily and their reference answers (exact match)."""

    prompt_ids: np.ndarray
    """(n, width) token ids, padded on the left."""
    prompt_mask: np.ndarray
    references: tuple[str, ...]
    tokenizer: Any
    max_new_tokens: int


def prepare_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer with a padding token (its end-of-sequence token when it has none)."""
    if tokenizer.eos_token_id is None:
        raise InputError("model.name_or_path", getattr(tokenizer, "name_or_path", "?"),
                         "its tokenizer has no end-of-sequence token", "use a causal LM's tokenizer")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_prompt(tokenizer: Any, prompt: str, messages: str) -> tuple[str, bool]:
    """The prompt text and whether it already holds the special tokens (a chat template's output)."""
    turns = json.loads(messages) if messages else [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False), True
    if messages:
        text = "".join(f"{turn['role']}: {turn['content']}\n" for turn in turns) + "assistant: "
        return text, False
    return ALPACA_TEMPLATE.format(prompt=prompt), False


def prompt_ids(tokenizer: Any, prompt: str, messages: str) -> list[int]:
    text, templated = render_prompt(tokenizer, prompt, messages)
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def encode_example(tokenizer: Any, prompt: str, response: str, messages: str, *, text_task: bool,
                   max_length: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one example, at most ``max_length`` long, not padded."""
    if text_task:
        ids = tokenizer(response, add_special_tokens=True)["input_ids"] + [tokenizer.eos_token_id]
        ids = ids[:max_length]
        return ids, list(ids)
    head = prompt_ids(tokenizer, prompt, messages)
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    room = max(max_length - len(answer), max_length // 2)
    head = head[-room:] if len(head) > room else head
    answer = answer[:max_length - len(head)]
    return head + answer, [IGNORE_INDEX] * len(head) + answer


def tokenize_causal(task_data: TaskData, tokenizer: Any, *, max_length: int) -> TaskData:
    """Both splits as ``input_ids``, ``attention_mask`` and ``labels`` (int64, padded on the right
    to ``max_length``) in torch format."""
    tokenizer = prepare_tokenizer(tokenizer)
    text_task = task_data.spec.name == "text"

    def convert(split: datasets.Dataset) -> datasets.Dataset:
        import datasets

        rows = [encode_example(tokenizer, p, r, m, text_task=text_task, max_length=max_length)
                for p, r, m in zip(split["prompt"], split["response"], split["messages"])]
        pad = tokenizer.pad_token_id
        columns = {"input_ids": [ids + [pad] * (max_length - len(ids)) for ids, _ in rows],
                   "attention_mask": [[1] * len(ids) + [0] * (max_length - len(ids)) for ids, _ in rows],
                   "labels": [labels + [IGNORE_INDEX] * (max_length - len(labels)) for _, labels in rows]}
        dataset = datasets.Dataset.from_dict({k: np.asarray(v, dtype=np.int64) for k, v in columns.items()})
        dataset.set_format("torch")
        return dataset

    return replace(task_data, train=convert(task_data.train), validation=convert(task_data.validation))


def generation_set(validation: datasets.Dataset, tokenizer: Any, *, max_examples: int, max_length: int,
                   max_new_tokens: int) -> GenerationSet | None:
    """The first ``max_examples`` validation prompts (left-padded, at most ``max_length`` tokens)
    with their responses as references; ``None`` when ``max_examples`` is 0."""
    count = min(max_examples, len(validation))
    if count == 0:
        return None
    tokenizer = prepare_tokenizer(tokenizer)
    prompts = [prompt_ids(tokenizer, p, m)[-max_length:]
               for p, m in zip(validation["prompt"][:count], validation["messages"][:count])]
    width = max(len(ids) for ids in prompts)
    pad = tokenizer.pad_token_id
    ids = np.asarray([[pad] * (width - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.asarray([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return GenerationSet(prompt_ids=ids, prompt_mask=mask, references=tuple(validation["response"][:count]),
                         tokenizer=tokenizer, max_new_tokens=max_new_tokens)
