"""Batches: tokenising a task, cutting batches to their longest example, and each device's seeded stream."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from deft_ray.errors import InputError
from deft_ray.learning.tasks import TaskData

if TYPE_CHECKING:
    import datasets
    import torch


def tokenize(task_data: TaskData, tokenizer: Any, *, max_length: int = 64) -> TaskData:
    """Tokenise both splits, padded to ``max_length``, in torch format.

    The columns become ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer
    makes them) and ``labels`` (int64, or float32 for regression).
    """
    pair = len(task_data.spec.text_fields) > 1

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["sentence1"], batch["sentence2"] if pair else None,
                            truncation=True, padding="max_length", max_length=max_length)
        return {**encoded, "labels": batch["label"]}

    def convert(split: datasets.Dataset) -> datasets.Dataset:
        split = split.map(encode, batched=True, remove_columns=split.column_names)
        split.set_format("torch")
        return split

    return replace(task_data, train=convert(task_data.train), validation=convert(task_data.validation))


def trim_padding(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows' token columns cut after the last position any row attends to.

    :func:`tokenize` pads every example to ``max_length`` on the right; a batch of short examples
    needs only its longest one's width, and the masked padding changes no output. Columns without
    a sequence axis (``labels``) pass through.
    """
    mask = columns.get("attention_mask")
    if mask is None or np.ndim(mask) != 2 or not mask.shape[0]:
        return dict(columns)
    attended = np.flatnonzero(np.asarray(mask).any(axis=0))
    width = int(attended[-1]) + 1 if attended.size else 1
    return {name: (column[:, :width] if np.ndim(column) == 2 and column.shape[1] == mask.shape[1] else column)
            for name, column in columns.items()}


class BatchStream:
    """Endless, seeded mini-batches from one device's examples of a tokenised dataset.

    Each epoch visits the device's examples in a fresh random order; a batch that reaches the end
    of an epoch continues into the next, so every batch has ``batch_size`` examples.
    ``state_dict``/``load_state_dict`` resume the stream exactly where it was.
    """

    def __init__(self, dataset: datasets.Dataset, indices: np.ndarray, *, batch_size: int, seed: int):
        if batch_size < 1:
            raise InputError("batch_size", batch_size, "must be at least 1", "use e.g. 16")
        if len(indices) == 0:
            raise InputError("indices", indices, "the device has no examples", "use fewer devices")
        self._dataset = dataset
        self._indices = np.asarray(indices, dtype=np.int64)
        self._batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(self._indices)
        self._position = 0
        self.epoch = 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        """The next ``batch_size`` examples as a dict of stacked tensors."""
        return self._dataset[self._next_rows()]

    def next_padded_length(self) -> int | None:
        """Tokens per example of the batch :meth:`next_batch` will return (the dataset's
        ``padded_length`` of its rows), without advancing the stream; ``None`` for a dataset
        that cannot tell. A batch's compute grows with it, so the device pool sends the
        dearest work first (:mod:`deft_ray.actors.pool`)."""
        padded_length = getattr(self._dataset, "padded_length", None)
        if padded_length is None:
            return None
        saved = self._rng.bit_generator.state, self._order, self._position, self.epoch
        try:
            return padded_length(self._next_rows())
        finally:  # an epoch's order is replaced, never changed in place
            self._rng.bit_generator.state, self._order, self._position, self.epoch = saved

    def _next_rows(self) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self._batch_size:
            if self._position == len(self._order):
                self._order = self._rng.permutation(self._indices)
                self._position = 0
                self.epoch += 1
            take = self._order[self._position:self._position + self._batch_size - len(chosen)]
            chosen.extend(take.tolist())
            self._position += len(take)
        return chosen

    def state_dict(self) -> dict[str, Any]:
        """A picklable snapshot: generator state, current epoch order and position."""
        return {"rng": self._rng.bit_generator.state, "order": self._order.tolist(),
                "position": self._position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the state must come from a stream over the same indices."""
        order = np.asarray(state["order"], dtype=np.int64)
        if not np.array_equal(np.sort(order), np.sort(self._indices)):
            raise InputError("state['order']", len(order), "was saved for other example indices",
                             "resume with the same partition (same seed and number of devices)")
        self._rng.bit_generator.state = state["rng"]
        self._order, self._position, self.epoch = order, int(state["position"]), int(state["epoch"])


class TensorTable:
    """Rows of a tokenised split kept as numpy columns (zero-copy from Ray's object store); a
    batch is cut to its longest example (:func:`trim_padding`)."""

    def __init__(self, columns: Mapping[str, np.ndarray]):
        self.columns = columns

    def padded_length(self, rows: list[int]) -> int | None:
        """The length the batch of ``rows`` is cut to: its longest example's (``None`` without
        an ``attention_mask`` column)."""
        mask = self.columns.get("attention_mask")
        if mask is None or np.ndim(mask) != 2:
            return None
        return int(trim_padding({"attention_mask": mask[rows]})["attention_mask"].shape[1])

    def __getitem__(self, rows: list[int]) -> dict[str, Any]:
        import torch

        batch = trim_padding({name: column[rows] for name, column in self.columns.items()})
        return {name: torch.from_numpy(np.ascontiguousarray(column)) for name, column in batch.items()}
