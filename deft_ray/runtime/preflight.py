"""Checks a run passes before Ray starts: the model loads, there are enough devices, budgets can work.

Each failure is an :class:`~deft_ray.errors.InputError` (or the planners' ``InfeasibleError``)
with one line naming the field, the value and the fix, so a run that cannot work costs no process.
"""

from __future__ import annotations

import numpy as np

from deft_ray.config import RunConfig
from deft_ray.edge.instances import round_instance
from deft_ray.edge.profiles import load_profile
from deft_ray.errors import InputError
from deft_ray.planners import solve


def check_against_model(config: RunConfig) -> None:
    """Fail before Ray starts when the model cannot be loaded or there are too few devices."""
    from transformers import AutoConfig

    path = config.model.path
    try:
        num_blocks = AutoConfig.from_pretrained(path).num_hidden_layers
    except (OSError, ValueError) as error:
        raise InputError("model.name_or_path", path, f"cannot be loaded ({str(error).splitlines()[0][:120]})",
                         "give a local model folder or a hub id reachable from here") from None
    if config.build_scheme().one_block_per_device and config.num_devices < num_blocks:
        raise InputError("devices", config.num_devices, f"scheme {config.scheme!r} gives each device at most one "
                         f"block and the model has {num_blocks} blocks",
                         f"use at least {num_blocks} devices or scheme 'multiblock'")
    check_memory_budgets(config)


def check_memory_budgets(config: RunConfig) -> None:
    """Fail before Ray starts when no device can hold the input-side block (it needs the most
    memory), or, with a profile file, when the scheme finds no plan for the first round.

    Raises:
        InputError: every device group's memory_fraction is below 1 (no absolute budget given).
        InfeasibleError: with a profile, the budgets admit no plan of the scheme; it names the block.
    """
    relative = [group for group in config.devices if group.memory_bytes is None]
    if len(relative) == len(config.devices) and max(group.memory_fraction for group in relative) < 1:
        largest = max(range(len(config.devices)), key=lambda i: config.devices[i].memory_fraction)
        raise InputError(f"devices[{largest}].memory_fraction", config.devices[largest].memory_fraction,
                         "is the largest and below 1, so no device can hold block 0 (the input-side layer "
                         "needs the most memory)", "give at least one device group memory_fraction >= 1")
    if config.profile:
        profile = load_profile(config.profile)
        instance = round_instance(config, config.device_specs(profile), profile, np.random.default_rng(config.seed))
        solve(instance, config.build_scheme(), seed=config.seed)


def check_against_data(config: RunConfig, task) -> None:
    """Fail before Ray starts on values that could only stall or mislead once the data is known:
    more devices than training examples, a batch larger than a device's share of the data, or a
    target the primary metric can never reach."""
    from deft_ray.learning.metrics import METRIC_RANGES
    from deft_ray.learning.partition import partition_indices

    train = task.train
    labels = np.asarray(train["label"]) if "label" in train.column_names else np.zeros(len(train), dtype=np.int64)
    if config.num_devices > len(labels):
        raise InputError("devices", config.num_devices, f"there are more devices than the {len(labels)} training "
                         "examples", "use fewer devices, or raise data.max_train_examples")
    parts = partition_indices(labels, config.num_devices, seed=config.seed, **config.data.partition_options())
    smallest = min(len(part) for part in parts)
    if config.data.batch_size > smallest:
        raise InputError("data.batch_size", config.data.batch_size,
                         f"is larger than the smallest device's share of the training set ({smallest} of "
                         f"{len(labels)} examples over {config.num_devices} devices)",
                         f"use at most {smallest}, fewer devices, or more training examples")
    from deft_ray.learning.tasks import scored_metric_names

    metric = scored_metric_names(task.spec, generates=config.data.exact_match_examples > 0)[0]
    low, high = METRIC_RANGES.get(metric, (-np.inf, np.inf))
    if config.target_metric is not None and not low <= config.target_metric <= high:
        raise InputError("target_metric", config.target_metric, f"{metric} lies in [{low:g}, {high:g}], so the "
                         "run could never reach it", f"give a target in [{low:g}, {high:g}], or leave it empty")
