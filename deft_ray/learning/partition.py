"""How a training set is split across the emulated devices, with Flower Datasets' partitioners.

``iid`` (:class:`~flwr_datasets.partitioner.IidPartitioner`, after a seeded shuffle), ``dirichlet``
label skew (:class:`~flwr_datasets.partitioner.DirichletPartitioner`), ``pathological`` (each
device holds ``classes_per_device`` classes, :class:`~flwr_datasets.partitioner.PathologicalPartitioner`),
``shard`` (label-sorted shards, ``shards_per_device`` each, McMahan et al. 2017,
:class:`~flwr_datasets.partitioner.ShardPartitioner`) and ``size-skewed`` (device i, 0-based in
config order, gets a share proportional to (i + 1) ** ``size_exponent``,
:class:`~flwr_datasets.partitioner.IdToSizeFncPartitioner`). Float labels (stsb) are cut into
:data:`NUM_REGRESSION_BINS` quantile bins before a label-based partition. ``shared`` gives every
device every example (each still draws its own seeded batches): the data setting of centralised
training, to compare the two.
"""

from __future__ import annotations

import warnings

import numpy as np

from deft_ray.errors import InputError, UnknownNameError

#: Number of quantile bins regression labels are cut into before a label-based partition.
NUM_REGRESSION_BINS = 5

PARTITION_SCHEMES = ("dirichlet", "iid", "pathological", "shard", "shared", "size-skewed")


def partition_indices(labels: np.ndarray, num_devices: int, *, scheme: str = "iid", alpha: float = 0.5,
                      classes_per_device: int = 1, shards_per_device: int = 2, size_exponent: float = 1.0,
                      seed: int) -> list[np.ndarray]:
    """Split example indices ``0..len(labels)-1`` across devices; disjoint (but ``shared``), covering, sorted.

    Every device gets at least one example: a device a partitioner leaves empty takes one from the
    largest device.

    Raises:
        InputError: a parameter is out of range, or the partition would leave examples on no
            device (too few classes per device) or a device with none.
        UnknownNameError: ``scheme`` is not one of :data:`PARTITION_SCHEMES`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:  # token labels of a causal LM: no classes, so only the split's sizes matter
        labels = np.zeros(len(labels), dtype=np.int64)
    if not 1 <= num_devices <= len(labels):
        raise InputError("num_devices", num_devices, f"must be in 1..{len(labels)} (the number of "
                         "training examples)", "use fewer devices or more training examples")
    if scheme not in PARTITION_SCHEMES:
        raise UnknownNameError("partition scheme", scheme, list(PARTITION_SCHEMES))
    if scheme == "shared":
        return [np.arange(len(labels), dtype=np.int64) for _ in range(num_devices)]
    if not alpha > 0:
        raise InputError("alpha", alpha, "must be positive", "use e.g. 0.5 (skewed) or 100 (near IID)")
    if scheme == "shard" and len(labels) < num_devices * shards_per_device:
        raise InputError("data.shards_per_device", shards_per_device, f"{num_devices} devices x {shards_per_device} "
                         f"shards exceed the {len(labels)} training examples", "use fewer shards or devices")
    groups = _label_groups(labels)
    num_classes = len(np.unique(groups))
    if scheme == "pathological" and not 1 <= classes_per_device <= num_classes:
        raise InputError("data.classes_per_device", classes_per_device, f"must be in 1..{num_classes} (the "
                         "task's classes)", f"give at most {num_classes}")
    if scheme == "pathological" and num_devices * classes_per_device < num_classes:
        raise InputError("data.classes_per_device", classes_per_device, f"{num_devices} devices x "
                         f"{classes_per_device} classes leave some of the {num_classes} classes on no device",
                         f"give at least {-(-num_classes // num_devices)}")
    parts = _flower_parts(groups, num_devices, scheme, alpha=alpha, classes_per_device=classes_per_device,
                          shards_per_device=shards_per_device, size_exponent=size_exponent, seed=seed)
    _fill_empty(parts, np.random.default_rng(seed))
    return [np.sort(part).astype(np.int64) for part in parts]


def label_counts(labels: np.ndarray, parts: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
    """The label groups (class ids, or quantile bins of float labels) and each device's count of
    each, shape (devices, groups): what the label-distribution plot draws."""
    labels = np.asarray(labels)
    groups = _label_groups(labels)
    names = np.unique(groups)
    if np.issubdtype(labels.dtype, np.floating):
        edges = np.quantile(labels, np.linspace(0, 1, NUM_REGRESSION_BINS + 1))
        names_text = [f"{edges[g]:.2g}-{edges[g + 1]:.2g}" for g in names]
    else:
        names_text = [str(name) for name in names]
    counts = np.array([[int(np.sum(groups[part] == name)) for name in names] for part in parts])
    return names_text, counts


def _flower_parts(groups: np.ndarray, num_devices: int, scheme: str, *, alpha: float, classes_per_device: int,
                  shards_per_device: int, size_exponent: float, seed: int) -> list[np.ndarray]:
    import datasets
    from flwr_datasets import partitioner as flower

    datasets.disable_progress_bars()
    # shuffled first, so that which examples of a class a device gets depends on the seed
    dataset = datasets.Dataset.from_dict({"label": groups, "index": np.arange(len(groups))})
    dataset = dataset.shuffle(seed=seed).flatten_indices()
    if scheme == "iid":
        partitioner = flower.IidPartitioner(num_partitions=num_devices)
    elif scheme == "dirichlet":
        partitioner = flower.DirichletPartitioner(num_partitions=num_devices, partition_by="label", alpha=alpha,
                                                  min_partition_size=0, seed=seed)
    elif scheme == "pathological":
        partitioner = flower.PathologicalPartitioner(num_partitions=num_devices, partition_by="label",
                                                     num_classes_per_partition=classes_per_device,
                                                     class_assignment_mode="first-deterministic", seed=seed)
    elif scheme == "shard":
        partitioner = flower.ShardPartitioner(num_partitions=num_devices, partition_by="label",
                                              shard_size=len(groups) // (num_devices * shards_per_device),
                                              keep_incomplete_shard=True, seed=seed)
    else:
        partitioner = flower.IdToSizeFncPartitioner(num_partitions=num_devices,
                                                    partition_id_to_size_fn=lambda ids: ids ** size_exponent)
    partitioner.dataset = dataset
    try:
        with warnings.catch_warnings():  # pyarrow's deprecation notice inside Flower's label sort
            warnings.simplefilter("ignore", FutureWarning)
            return [np.asarray(partitioner.load_partition(k)["index"], dtype=np.int64) for k in range(num_devices)]
    except ValueError as error:  # Flower's own check, e.g. a size-skewed device left with no example
        raise InputError("data.partition", scheme, f"cannot split {len(groups)} examples over {num_devices} "
                         f"devices ({error})", "use fewer devices, more examples or milder skew") from None


def _label_groups(labels: np.ndarray) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.floating):
        return labels
    edges = np.quantile(labels, np.linspace(0, 1, NUM_REGRESSION_BINS + 1)[1:-1])
    return np.digitize(labels, edges)


def _fill_empty(parts: list[np.ndarray], rng: np.random.Generator) -> None:
    """Give each empty device one example of the largest device, in place."""
    for k, part in enumerate(parts):
        if len(part) == 0:
            donor = max(range(len(parts)), key=lambda j: len(parts[j]))
            if len(parts[donor]) < 2:
                raise InputError("num_devices", len(parts), "leaves a device with no training example",
                                 "use fewer devices or more training examples")
            pick = int(rng.integers(len(parts[donor])))
            parts[k] = parts[donor][pick:pick + 1]
            parts[donor] = np.delete(parts[donor], pick)
