"""Task data: GLUE (local TSV or hub) and a built-in synthetic task, tokenisation, device partitions.

Every task arrives in one schema: ``datasets.Dataset`` splits ``train`` and ``validation`` with
columns ``sentence1``, ``sentence2`` (empty for single-sentence tasks) and ``label`` (int, or
float for the regression task stsb). :func:`partition_indices` splits a training set across the
emulated devices, :class:`BatchStream` draws one device's mini-batches reproducibly, and
:func:`compute_metrics` scores predictions with each task's GLUE metrics.

Importing this module costs numpy only; ``datasets``, ``torch`` and ``scipy`` load on first use.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, TYPE_CHECKING, Any, Callable

import numpy as np

from deft_ray.errors import InputError, UnknownNameError

if TYPE_CHECKING:
    import datasets
    import torch

COLUMNS = ("sentence1", "sentence2", "label")
DATA_DIR_FIX = "pass --data-dir pointing at a folder with <task>/train.tsv and <task>/validation.tsv"
#: Number of quantile bins regression labels are cut into before a Dirichlet partition.
NUM_REGRESSION_BINS = 5


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the rest of the package needs to know about a task."""

    name: str
    num_labels: int
    """Classes of a classification task; 1 for regression."""
    is_regression: bool
    text_fields: tuple[str, ...]
    """Text columns of the source (the hub's names); two means a sentence-pair task."""
    metric_names: tuple[str, ...]
    """Metrics reported by :func:`compute_metrics`; the first is the primary one."""
    label_range: tuple[float, float] | None = None
    """Inclusive range of a regression label."""


@dataclass(frozen=True)
class TaskData:
    """A task's spec and its two splits (raw text, or tokenised by :func:`tokenize`)."""

    spec: TaskSpec
    train: datasets.Dataset
    validation: datasets.Dataset


_TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("sst2", 2, False, ("sentence",), ("accuracy",)),
        TaskSpec("rte", 2, False, ("sentence1", "sentence2"), ("accuracy",)),
        TaskSpec("mrpc", 2, False, ("sentence1", "sentence2"), ("f1", "accuracy")),
        TaskSpec("stsb", 1, True, ("sentence1", "sentence2"), ("pearson", "spearmanr"), (0.0, 5.0)),
        TaskSpec("synthetic-sentiment", 2, False, ("sentence",), ("accuracy",)),
    )
}


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return sorted(_TASKS)


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; raises :class:`UnknownNameError` listing the valid names."""
    if name not in _TASKS:
        raise UnknownNameError("task", name, task_names())
    return _TASKS[name]


def primary_metric(spec: TaskSpec) -> str:
    """The metric that ranks runs: accuracy (sst2, rte, synthetic), f1 (mrpc), pearson (stsb)."""
    return spec.metric_names[0]


def load_task(name: str, *, data_dir: str | None = None, seed: int = 0,
              max_train_examples: int | None = None, max_eval_examples: int | None = None) -> TaskData:
    """Load task ``name`` in the common schema.

    Args:
        name: a name from :func:`task_names`.
        data_dir: folder holding ``<name>/train.tsv`` and ``<name>/validation.tsv``; ``None``
            downloads a GLUE task from the hub (``nyu-mll/glue``). Generated tasks ignore it.
        seed: seeds the synthetic task and the subsamples. (default: 0)
        max_train_examples, max_eval_examples: keep a seeded random subset of at most this many
            examples. (default: None, keep all)

    Raises:
        UnknownNameError: unknown task. InputError: missing or malformed files, hub unreachable.
    """
    spec = get_task(name)
    if name in _GENERATORS:
        train, validation = _GENERATORS[name](seed)
    elif data_dir is not None:
        folder = Path(data_dir) / name
        train, validation = (_read_tsv(folder / f"{split}.tsv", spec) for split in ("train", "validation"))
    else:
        train, validation = _load_hub(spec)
    rng = np.random.default_rng(seed)
    train = _subsample(train, max_train_examples, "max_train_examples", rng)
    validation = _subsample(validation, max_eval_examples, "max_eval_examples", rng)
    return TaskData(spec, train, validation)


def _to_dataset(spec: TaskSpec, columns: dict[str, list]) -> datasets.Dataset:
    import datasets

    label = datasets.Value("float32" if spec.is_regression else "int64")
    text = datasets.Value("string")
    features = datasets.Features({"sentence1": text, "sentence2": text, "label": label})
    return datasets.Dataset.from_dict(columns, features=features)


def _read_tsv(path: Path, spec: TaskSpec) -> datasets.Dataset:
    """Read and validate every row of a ``sentence1<TAB>sentence2<TAB>label`` file."""
    if not path.is_file():
        raise InputError("data_dir", str(path.parents[1]), f"{path} does not exist", DATA_DIR_FIX)
    columns: dict[str, list] = {column: [] for column in COLUMNS}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != list(COLUMNS):
            raise InputError(f"{path} line 1", header, "wrong header", "the first line must be "
                             "sentence1<TAB>sentence2<TAB>label")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if len(row) != 3:
                raise InputError(where, "\t".join(row), f"has {len(row)} tab-separated fields, "
                                 "expected 3", "fix the row: sentence1<TAB>sentence2<TAB>label")
            columns["sentence1"].append(row[0])
            columns["sentence2"].append(row[1])
            columns["label"].append(_parse_label(row[2], spec, where))
    if not columns["label"]:
        raise InputError("data_dir", str(path.parents[1]), f"{path} has no examples", DATA_DIR_FIX)
    return _to_dataset(spec, columns)


def _parse_label(text: str, spec: TaskSpec, where: str) -> int | float:
    if spec.is_regression:
        parse, (low, high), expected = float, spec.label_range, "a number in [{}, {}]"
    else:
        parse, (low, high), expected = int, (0, spec.num_labels - 1), "a class id in {}..{}"
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise InputError(where, text, f"label is not {expected.format(low, high)}",
                         "fix the label in that row")
    return value


def _load_hub(spec: TaskSpec) -> tuple[datasets.Dataset, datasets.Dataset]:
    import datasets

    try:
        glue = datasets.load_dataset("nyu-mll/glue", spec.name)
    except OSError as error:  # ConnectionError, offline mode, missing cache
        raise InputError("data_dir", None, f"the dataset hub is unreachable ({error})",
                         DATA_DIR_FIX) from error
    return tuple(_from_hub_split(glue[split], spec) for split in ("train", "validation"))


def _from_hub_split(split: datasets.Dataset, spec: TaskSpec) -> datasets.Dataset:
    """Map a hub GLUE split (``sentence`` or ``sentence1/sentence2``, ``label``, ``idx``)."""
    first = split[spec.text_fields[0]]
    second = split[spec.text_fields[1]] if len(spec.text_fields) > 1 else [""] * len(first)
    return _to_dataset(spec, {"sentence1": first, "sentence2": second, "label": split["label"]})


def _subsample(split: datasets.Dataset, limit: int | None, field: str,
               rng: np.random.Generator) -> datasets.Dataset:
    if limit is not None and limit < 1:
        raise InputError(field, limit, "must be at least 1", "use None to keep every example")
    if limit is None or limit >= len(split):
        return split
    return split.select(np.sort(rng.permutation(len(split))[:limit]))


# The synthetic task: "<filler> <subject> <copula> [negation] [intensifier] <adjective> <filler>",
# sometimes two clauses joined by "but" (the second one decides). Negation flips the polarity,
# so no single word decides the label and a bag of words cannot reach 100%.

_SUBJECTS = ("the movie", "the film", "this book", "the restaurant", "the hotel", "the concert",
             "our trip", "the new phone", "the service", "the show", "the game", "this album",
             "the meal", "the course", "the app", "the museum", "the staff", "the ending")
_POSITIVE = ("good", "great", "excellent", "wonderful", "delightful", "enjoyable", "brilliant",
             "pleasant", "charming", "superb", "fantastic", "impressive", "lovely", "satisfying")
_NEGATIVE = ("bad", "terrible", "awful", "boring", "dull", "disappointing", "poor", "horrible",
             "mediocre", "tedious", "unpleasant", "annoying", "weak", "dreadful")
_NEGATIONS = ("not", "never", "hardly", "far from", "by no means")
_INTENSIFIERS = ("", "", "", "very", "really", "quite", "truly", "rather", "extremely")
_PREFIXES = ("", "", "", "honestly,", "to be fair,", "after a long wait,", "on a rainy tuesday,",
             "according to my friend,", "as expected,", "in the end,", "last weekend")
_SUFFIXES = ("", "", "", "overall.", "if you ask me.", "from start to finish.", "for the price.",
             "and we left at nine.", "as my sister said.", "this time.")
NUM_SYNTHETIC_TRAIN, NUM_SYNTHETIC_VALIDATION = 4000, 500
P_NEGATION, P_CONTRAST = 0.35, 0.2


def _clause(rng: np.random.Generator, positive: bool) -> str:
    negated = rng.random() < P_NEGATION
    adjectives = _POSITIVE if positive != negated else _NEGATIVE
    copula = str(rng.choice(("was", "is")))
    if negated:  # "was not good", "isn't bad"; no intensifier: "not very bad" is not praise
        verb = f"{copula} {rng.choice(_NEGATIONS)}" if rng.random() < 0.7 else f"{copula}n't"
    else:
        verb = f"{copula} {rng.choice(_INTENSIFIERS)}"
    return f"{rng.choice(_SUBJECTS)} {verb} {rng.choice(adjectives)}"


def _sentence(rng: np.random.Generator, label: int) -> str:
    text = _clause(rng, bool(label))
    if rng.random() < P_CONTRAST:
        text = f"{_clause(rng, not label)}, but {text}"
    return " ".join(f"{rng.choice(_PREFIXES)} {text} {rng.choice(_SUFFIXES)}".split())


def _synthetic_split(rng: np.random.Generator, size: int, exclude: set[str]) -> dict[str, list]:
    labels = rng.permutation(np.arange(size) % 2).tolist()  # exactly balanced
    sentences = []
    for label in labels:
        text = _sentence(rng, label)
        while text in exclude:
            text = _sentence(rng, label)
        sentences.append(text)
    return {"sentence1": sentences, "sentence2": [""] * size, "label": labels}


def synthetic_sentiment(seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Generate the ``synthetic-sentiment`` train and validation splits, deterministic in ``seed``.

    Labels are exactly balanced; no validation sentence also occurs in the training split.
    """
    spec = get_task("synthetic-sentiment")
    train_rng, validation_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train = _synthetic_split(train_rng, NUM_SYNTHETIC_TRAIN, set())
    validation = _synthetic_split(validation_rng, NUM_SYNTHETIC_VALIDATION, set(train["sentence1"]))
    return _to_dataset(spec, train), _to_dataset(spec, validation)


#: Tasks generated by the package instead of read from files or the hub.
_GENERATORS: dict[str, Callable[[int], tuple[datasets.Dataset, datasets.Dataset]]] = {
    "synthetic-sentiment": synthetic_sentiment}


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


def partition_indices(labels: np.ndarray, num_devices: int, *, scheme: str = "iid",
                      alpha: float = 0.5, seed: int) -> list[np.ndarray]:
    """Split example indices ``0..len(labels)-1`` across devices; disjoint, covering, sorted.

    ``iid`` shuffles and splits into near-equal parts. ``dirichlet`` draws, for each class, the
    devices' shares from Dir(``alpha``) (smaller ``alpha``, more label skew); float labels are cut
    into 5 quantile bins first. A device left empty takes one example from the largest device.
    """
    labels = np.asarray(labels)
    if not 1 <= num_devices <= len(labels):
        raise InputError("num_devices", num_devices, f"must be in 1..{len(labels)} (the number of "
                         "training examples)", "use fewer devices or more training examples")
    if not alpha > 0:
        raise InputError("alpha", alpha, "must be positive", "use e.g. 0.5 (skewed) or 100 (near IID)")
    if scheme not in ("iid", "dirichlet"):
        raise UnknownNameError("partition scheme", scheme, ["dirichlet", "iid"])
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), num_devices)
    else:
        parts = _dirichlet_parts(_label_groups(labels), num_devices, alpha, rng)
    return [np.sort(part).astype(np.int64) for part in parts]


def _label_groups(labels: np.ndarray) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.floating):
        return labels
    edges = np.quantile(labels, np.linspace(0, 1, NUM_REGRESSION_BINS + 1)[1:-1])
    return np.digitize(labels, edges)


def _dirichlet_parts(groups: np.ndarray, num_devices: int, alpha: float,
                     rng: np.random.Generator) -> list[np.ndarray]:
    parts: list[list[int]] = [[] for _ in range(num_devices)]
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        shares = rng.dirichlet(np.full(num_devices, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, cuts)):
            part.extend(chunk.tolist())
    for part in parts:
        if not part:
            donor = max(parts, key=len)
            part.append(donor.pop(int(rng.integers(len(donor)))))
    return [np.asarray(part, dtype=np.int64) for part in parts]


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
        chosen: list[int] = []
        while len(chosen) < self._batch_size:
            if self._position == len(self._order):
                self._order = self._rng.permutation(self._indices)
                self._position = 0
                self.epoch += 1
            take = self._order[self._position:self._position + self._batch_size - len(chosen)]
            chosen.extend(take.tolist())
            self._position += len(take)
        return self._dataset[chosen]

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


def compute_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score predictions with ``spec.metric_names``.

    ``predictions`` are class ids or logits of shape (n, num_labels) for classification, and
    scores of shape (n,) or (n, 1) for regression. Pearson and Spearman correlations of a constant
    input are undefined and reported as 0.0.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels).reshape(-1)
    if spec.is_regression:
        predictions = predictions.reshape(-1).astype(float)
    elif predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    if len(predictions) != len(labels):
        raise InputError("predictions", predictions.shape, f"do not match {len(labels)} labels",
                         "pass one prediction per label")
    return {name: float(_METRICS[name](predictions, labels)) for name in spec.metric_names}


def _f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class 1: 2 tp / (2 tp + fp + fn)."""
    true_positives = np.sum((predictions == 1) & (labels == 1))
    wrong = np.sum(predictions != labels)
    denominator = 2 * true_positives + wrong
    return 2 * true_positives / denominator if denominator else 0.0


def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(predictions: np.ndarray, labels: np.ndarray) -> float:
        from scipy import stats

        if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
            return 0.0
        return getattr(stats, kind)(predictions, labels)[0]

    return score


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda predictions, labels: np.mean(predictions == labels),
    "f1": _f1,
    "pearson": _correlation("pearsonr"),
    "spearmanr": _correlation("spearmanr"),
}
