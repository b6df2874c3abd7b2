"""How a training set is split across the emulated devices (IID or Dirichlet label skew), or shared by all."""

from __future__ import annotations

import numpy as np

from deft_ray.errors import InputError, UnknownNameError

#: Number of quantile bins regression labels are cut into before a Dirichlet partition.
NUM_REGRESSION_BINS = 5


def partition_indices(labels: np.ndarray, num_devices: int, *, scheme: str = "iid",
                      alpha: float = 0.5, seed: int) -> list[np.ndarray]:
    """Split example indices ``0..len(labels)-1`` across devices; disjoint (but ``shared``), covering, sorted.

    ``iid`` shuffles and splits into near-equal parts. ``dirichlet`` draws, for each class, the
    devices' shares from Dir(``alpha``) (smaller ``alpha``, more label skew); float labels are cut
    into 5 quantile bins first. A device left empty takes one example from the largest device.
    ``shared`` gives every device every example (each still draws its own seeded batches): the
    data setting of centralised training, to compare the two.
    """
    labels = np.asarray(labels)
    if not 1 <= num_devices <= len(labels):
        raise InputError("num_devices", num_devices, f"must be in 1..{len(labels)} (the number of "
                         "training examples)", "use fewer devices or more training examples")
    if not alpha > 0:
        raise InputError("alpha", alpha, "must be positive", "use e.g. 0.5 (skewed) or 100 (near IID)")
    if scheme not in ("iid", "dirichlet", "shared"):
        raise UnknownNameError("partition scheme", scheme, ["dirichlet", "iid", "shared"])
    if scheme == "shared":
        return [np.arange(len(labels), dtype=np.int64) for _ in range(num_devices)]
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
