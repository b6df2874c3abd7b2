"""Building a run from its config, before any device exists: data, model, profile, devices, scheme.

Nothing here needs Ray: :func:`prepare` gives what both the in-process and the Ray launch need
(:mod:`deft_ray.actors.launch`), and :func:`coordinator_for` builds the coordinator around
whichever pool and planner they made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from deft_ray.config import RunConfig
from deft_ray.edge.clock import Clock
from deft_ray.edge.devices import DeviceSpec
from deft_ray.errors import InputError
from deft_ray.learning.validation import ValidationSet
from deft_ray.planners import BlockCost, Scheme, make_blocks_monotone
from deft_ray.runtime.coordinator import Coordinator
from deft_ray.runtime.device_setup import DeviceSetup
from deft_ray.runtime.dispatch import DevicePool, PlannerLike
from deft_ray.runtime.ledger import RunDirectory
from deft_ray.runtime.records import Event, EventKind
from deft_ray.runtime.round_kinds import round_kind_of


@dataclass(frozen=True)
class Prepared:
    """Everything a run builds before any device exists."""

    model: Any
    scheme: Scheme
    setup: DeviceSetup
    profile: tuple[BlockCost, ...]
    specs: tuple[DeviceSpec, ...]
    train_columns: Mapping[str, np.ndarray]
    partitions: tuple[np.ndarray, ...]
    evaluation: ValidationSet
    events: tuple[Event, ...]


def load_config_task(config: RunConfig):
    """The run's task data, every row checked (bad rows raise :class:`InputError`), after checking
    that the model is of the kind the task needs (a classifier, or a decoder-only causal LM)."""
    from deft_ray.learning.tasks import get_task, load_task

    model_kind_for(config, get_task(config.data.task))
    data = config.data
    return load_task(data.task, data_dir=data.data_dir, seed=config.seed, max_train_examples=data.max_train_examples,
                     max_eval_examples=data.max_eval_examples, train_file=data.train_file, eval_file=data.eval_file,
                     dataset=data.dataset)


def model_kind_for(config: RunConfig, spec: Any) -> str:
    """``"causal-lm"`` for a causal-LM task on a decoder, ``"sequence-classifier"`` for a
    classification task on an encoder; a mismatch is an :class:`InputError`."""
    from transformers import AutoConfig

    from deft_ray.learning.causal_lm import is_causal_lm

    path = config.model.path
    try:
        causal = is_causal_lm(AutoConfig.from_pretrained(path))
    except (OSError, ValueError) as error:
        raise InputError("model.name_or_path", path, f"cannot be loaded ({str(error).splitlines()[0][:120]})",
                         "give a local model folder or a hub id reachable from here") from None
    if causal != (spec.kind == "causal-lm"):
        wanted = "a decoder-only causal LM" if spec.kind == "causal-lm" else "a sequence classifier (BERT family)"
        raise InputError("model.name_or_path", config.model.name_or_path or path, f"task {spec.name!r} needs {wanted}",
                         "pick a model of that kind, or a task for this model (instruction, text or "
                         "synthetic-instructions for decoders)")
    return "causal-lm" if causal else "sequence-classifier"


def prepare(config: RunConfig, task: Any = None, *, profile_file: str | None = None) -> Prepared:
    """Load (unless given) and tokenise the task, split it across devices, load the model and its
    block profile (from ``profile_file`` when given: a resumed run plans with the profile it began
    with), and build the scheme."""
    import datasets
    from transformers import AutoTokenizer

    from deft_ray.learning.model import BlockModel
    from deft_ray.learning.partition import partition_indices

    datasets.disable_progress_bars()
    model_path = config.model.path
    task = task or load_config_task(config)
    model_kind = model_kind_for(config, task.spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as error:
        raise InputError("model.name_or_path", model_path, f"cannot be loaded ({str(error).splitlines()[0]})",
                         "give a local model folder or a hub id reachable from here") from None
    task, generation = _tokenized(config, task, tokenizer)
    model = BlockModel.from_pretrained(model_path, num_labels=task.spec.num_labels,
                                       lora=config.model.lora_spec(model_kind=model_kind), seed=config.seed)
    lora = model.lora  # target_modules resolved
    train_columns = {k: np.ascontiguousarray(v) for k, v in task.train.with_format("numpy")[:].items()}
    validation = {k: np.ascontiguousarray(v) for k, v in task.validation.with_format("numpy")[:].items()}

    profile, events = _block_profile(config, model, train_columns, profile_file)
    specs = config.device_specs(profile)
    partitions = partition_indices(train_columns["labels"], len(specs), seed=config.seed, **config.data.partition_options())
    setup = DeviceSetup(model_path=model_path, num_labels=task.spec.num_labels, lora=lora, seed=config.seed,
                        batch_size=config.data.batch_size, clock=Clock(config.clock, config.time_scale),
                        block_memory_bytes=tuple(b.memory_bytes for b in profile), optimizer=config.optimizer,
                        upload_dtype=config.network.upload_dtype)
    return Prepared(model=model, scheme=config.build_scheme(), setup=setup, profile=profile, specs=specs,
                    train_columns=train_columns, partitions=tuple(partitions),
                    evaluation=ValidationSet(spec=task.spec, columns=validation, generation=generation),
                    events=tuple(events))


def _tokenized(config: RunConfig, task: Any, tokenizer: Any) -> tuple[Any, Any]:
    """The task tokenised for its model kind, and a causal LM's generation set (else ``None``)."""
    from deft_ray.learning.batches import tokenize

    if task.spec.kind != "causal-lm":
        return tokenize(task, tokenizer, max_length=config.model.max_length), None
    from deft_ray.learning.causal_batches import generation_set, tokenize_causal

    generation = None
    if "exact_match" in task.spec.metric_names and task.spec.name != "text":
        generation = generation_set(task.validation, tokenizer, max_examples=config.data.exact_match_examples,
                                    max_length=config.model.max_length, max_new_tokens=config.data.max_new_tokens)
    return tokenize_causal(task, tokenizer, max_length=config.model.max_length), generation


def _block_profile(config: RunConfig, model: Any, train_columns: Mapping[str, np.ndarray],
                   profile_file: str | None) -> tuple[tuple[BlockCost, ...], list[Event]]:
    """The profile the planner uses: a file, or measured now on one thread (as a device computes),
    then made monotone in depth; with the events that say which."""
    import torch

    from deft_ray.edge.profiles import load_profile
    from deft_ray.learning.profiling import profile_blocks

    events = []
    if profile_file or config.profile:
        profile = load_profile(profile_file or config.profile)
        if len(profile) != model.num_blocks:
            raise InputError("profile", config.profile, f"has {len(profile)} blocks but the model has "
                             f"{model.num_blocks}", "measure a profile of this model or leave profile empty")
        if profile_file:
            events.append(Event(kind=EventKind.PROFILE_LOADED, detail=profile_file))
    else:
        rows = np.arange(min(config.data.batch_size, len(train_columns["labels"])))
        batch = {k: torch.from_numpy(v[rows]) for k, v in train_columns.items()}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            measured = profile_blocks(model, batch, repeats=3, warmup=1)
        finally:
            torch.set_num_threads(threads)
        profile = tuple(BlockCost(**row) for row in measured)
        events.append(Event(kind=EventKind.PROFILE_MEASURED, detail=f"{len(profile)} blocks, block 0 "
                            f"{profile[0].compute_s:.3f} s, last {profile[-1].compute_s:.3f} s"))
    profile, notes = make_blocks_monotone(profile)
    events.extend(Event(kind=EventKind.PROFILE_SMOOTHED, detail=note) for note in notes)
    return profile, events


def _write_label_plot(prepared: Prepared, run_dir: RunDirectory) -> None:
    """``plots/labels.png``: each device's training examples by label (classification and regression tasks)."""
    from deft_ray.experiments.plots import write_label_distribution_plot
    from deft_ray.learning.partition import label_counts

    names, counts = label_counts(prepared.train_columns["labels"], list(prepared.partitions))
    write_label_distribution_plot([spec.name for spec in prepared.specs], names, counts,
                                  run_dir.plots_dir / "labels.png")


def coordinator_for(config: RunConfig, prepared: Prepared, pool: DevicePool, planner: PlannerLike,
                    run_dir: RunDirectory, *, resume: bool) -> Coordinator:
    """The coordinator of a run whose devices and planner are ready; ``resume`` restores the latest
    checkpoint of ``run_dir``."""
    from deft_ray.learning.batches import BatchStream, TensorTable

    run_dir.create(config, resume=resume)
    if not resume:
        run_dir.write_profile(prepared.profile, source=config.profile or "measured at start-up, one thread, made monotone")
        if np.ndim(prepared.train_columns["labels"]) == 1:  # a causal LM's token labels have no classes
            _write_label_plot(prepared, run_dir)
    server_stream = None
    if prepared.model.head_block is not None:
        server_stream = BatchStream(TensorTable(prepared.train_columns), np.arange(len(prepared.train_columns["labels"])),
                                    batch_size=config.data.batch_size, seed=config.seed)
    coordinator = Coordinator(config=config, model=prepared.model, profile=prepared.profile, specs=prepared.specs,
                              pool=pool, planner=planner, round_kind=round_kind_of(prepared.scheme),
                              evaluation=prepared.evaluation, run_dir=run_dir, events=prepared.events,
                              server_stream=server_stream)
    if resume:
        from deft_ray.runtime.checkpoint import load_resumable, restore_run

        path, checkpoint = load_resumable(run_dir, config)
        restore_run(coordinator, checkpoint, path)
        run_dir.write_config(config)  # only now: a refused resume leaves the run's files as they were
    return coordinator
