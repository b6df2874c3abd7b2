"""A Hugging Face sequence classifier with LoRA, split into one parameter block per layer.

Block ``i`` is the LoRA of transformer layer ``i`` in model order: block 0 sits next to the
embeddings, so its gradient needs the longest backward pass (docs/method.md, "Cost model").
:meth:`BlockModel.block_gradients` makes only the requested blocks trainable, so autograd
builds no graph below the lowest of them: compute and activation memory fall as ``i`` rises.

Choices made here:

- Dropout: by default the model always runs in eval mode (``use_dropout=False``), so gradients
  are deterministic and the blocks computed on different devices from one batch assemble
  exactly into the joint gradient. ``use_dropout=True`` trains with the config's dropout.
- Head: ``LoraSpec.head_with="last"`` puts the classification head into the last block (the
  one nearest the output); ``"server"`` makes it an extra block with index ``num_blocks`` that
  planners never see and the coordinator computes itself.
- Seeding: the head and the LoRA weights are initialised from ``seed``, so every device built
  with the same seed holds the same adapter. The head is always freshly initialised.
- Decoders: ``LoraSpec(model_kind="causal-lm")`` builds a decoder-only causal LM instead
  (:class:`~deft_ray.learning.causal_lm.CausalBlockModel`: no head, the LM head stays frozen).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
import warnings
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.utils import logging as hf_logging

from deft_ray.errors import InputError
from deft_ray.learning.lora import LORA_A_PART, LoraSpec, layer_list_name, resolve_target_modules, split_blocks

HEAD_MODULE_NAMES = ("classifier", "score")
"""Names Hugging Face gives the head of a sequence classifier (peft's SEQ_CLS defaults)."""

MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_LORA_PART = re.compile(r"\.lora_")
_READ_ONLY_WARNING = "The given NumPy array is not writable"


class BlockModel:
    """A peft LoRA sequence classifier whose trainable parameters are split into blocks.

    Build it with :meth:`from_pretrained` or :meth:`from_shared_state`. Parameter names are
    peft's (``base_model.model.bert.encoder.layer.3.attention.self.query.lora_A.default.weight``);
    the head's are under ``classifier.modules_to_save``.
    """

    def __init__(self, peft_model: PeftModel, *, lora: LoraSpec, use_dropout: bool):
        self.peft_model = peft_model
        self.lora = lora
        """The LoRA settings, ``target_modules`` resolved (never ``"auto"``)."""
        self.use_dropout = use_dropout
        self._params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
        self.num_blocks = peft_model.config.num_hidden_layers
        """Number of blocks the planner sees (= transformer layers)."""
        layers = layer_list_name(peft_model.get_base_model(), self.num_blocks)
        self._blocks = split_blocks(list(self._params), self.num_blocks, lora, layers=layers)
        self.head_block = self.num_blocks if len(self._blocks) > self.num_blocks else None
        """Index of the head's own block with ``head_with="server"``, else ``None``."""
        if lora.dropout > 0 and not use_dropout:
            warnings.warn(f"lora.dropout = {lora.dropout} has no effect because use_dropout=False "
                          "keeps the model in eval mode; pass use_dropout=True to train with dropout",
                          stacklevel=4)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, num_labels: int, lora: LoraSpec = LoraSpec(),
                        seed: int, problem_type: str | None = None,
                        use_dropout: bool = False) -> BlockModel:
        """Load a pretrained backbone and add seeded LoRA and head (regression if ``num_labels == 1``).

        With ``lora.model_kind == "causal-lm"`` this is :meth:`CausalBlockModel.from_pretrained`
        (``num_labels`` is then unused)."""
        if lora.model_kind == "causal-lm":
            from deft_ray.learning.causal_lm import CausalBlockModel

            return CausalBlockModel.from_pretrained(name_or_path, lora=lora, seed=seed, use_dropout=use_dropout)
        _check_num_labels(num_labels)
        with seeded(seed), quiet_transformers():
            base, info = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=num_labels, problem_type=_problem_type(num_labels, problem_type),
                output_loading_info=True)
        missing = sorted(k for k in info["missing_keys"] if not k.startswith(head_prefixes(base)))
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
        A causal LM (``lora.model_kind``) is built by :meth:`CausalBlockModel.from_shared_state`.
        """
        if lora.model_kind == "causal-lm":
            from deft_ray.learning.causal_lm import CausalBlockModel

            return CausalBlockModel.from_shared_state(config_path_or_name, numpy_state, lora=lora, seed=seed,
                                                      use_dropout=use_dropout)
        _check_num_labels(num_labels)
        config = AutoConfig.from_pretrained(config_path_or_name, num_labels=num_labels,
                                            problem_type=_problem_type(num_labels, problem_type))
        with torch.device("meta"), quiet_transformers():
            base = AutoModelForSequenceClassification.from_config(config)
        _assign_backbone(base, numpy_state)
        for name in _head_names(base):
            getattr(base, name).to_empty(device="cpu")
        return cls._wrap(base, lora=lora, seed=seed, use_dropout=use_dropout)

    @classmethod
    def _wrap(cls, base: torch.nn.Module, *, lora: LoraSpec, seed: int, use_dropout: bool) -> BlockModel:
        head_names = _head_names(base)
        assert head_names, f"{type(base).__name__} has no classification head named {HEAD_MODULE_NAMES}"
        lora = dataclasses.replace(lora, target_modules=resolve_target_modules(lora, base.config.model_type))
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.rank, lora_alpha=lora.alpha,
                            lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                            modules_to_save=head_names)
        with seeded(seed), warnings.catch_warnings():
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
        names = self.parameter_names_of(blocks)
        with self.trainable_only(names):
            loss = self.loss(batch)
            grads = torch.autograd.grad(loss, [self._params[n] for n in names])
        return dict(zip(names, grads)), float(loss.detach())

    def lora_a_names(self) -> list[str]:
        """Names of the trainable LoRA ``A`` matrices (frozen by FFA-LoRA), in model order."""
        return [n for n in self._params if LORA_A_PART.search(n)]

    def saved_activation_bytes(self, blocks: Sequence[int], batch: Mapping[str, torch.Tensor]) -> int:
        """Bytes of the tensors autograd saves for backward when ``blocks`` are trained.

        Counted with ``saved_tensors_hooks``, once per storage; weights are excluded.
        """
        names = self.parameter_names_of(blocks)
        weights = {t.untyped_storage().data_ptr() for t in self._all_tensors()}
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with self.trainable_only(names), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self.loss(batch)
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

    @property
    def num_trained_blocks(self) -> int:
        """Blocks holding trainable parameters: ``num_blocks``, plus one for a server-side head."""
        return len(self._blocks)

    def parameter_names_of(self, blocks: Sequence[int]) -> list[str]:
        """Trainable parameter names of ``blocks`` (a set; model order)."""
        if not blocks:
            raise InputError("blocks", blocks, "is empty", "name at least one block")
        return [n for i in sorted(set(blocks)) for n in self.block_parameter_names(i)]

    @contextlib.contextmanager
    def trainable_only(self, names: Sequence[str]) -> Iterator[None]:
        """Within the block, only ``names`` require grad, so autograd stops below the lowest."""
        wanted = set(names)
        try:
            for name, param in self._params.items():
                param.requires_grad_(name in wanted)
            yield
        finally:
            for param in self._params.values():
                param.requires_grad_(True)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The task loss of ``batch`` (which holds ``labels``), with a graph."""
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
    head, state = head_prefixes(base), {}
    for name, tensor in itertools.chain(base.named_parameters(), base.named_buffers()):
        if not (head and name.startswith(head)) and not _LORA_PART.search(name):
            tensor = tensor.detach().cpu()
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: its bits travel as int16
                tensor = tensor.view(torch.int16)
            state[name.replace(".base_layer.", ".")] = tensor.numpy()
    return state


def _assign_backbone(base: torch.nn.Module, numpy_state: Mapping[str, np.ndarray]) -> None:
    """Make ``base``'s frozen tensors zero-copy views of ``numpy_state`` (head left on meta)."""
    expected = {name: t.dtype for name, t in itertools.chain(base.state_dict().items(), base.named_buffers())}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_READ_ONLY_WARNING, category=UserWarning)
        tensors = {name: torch.from_numpy(array) for name, array in numpy_state.items()}
    for name, tensor in tensors.items():
        if expected.get(name) == torch.bfloat16 and tensor.dtype == torch.int16:
            tensors[name] = tensor.view(torch.bfloat16)
    persistent = set(base.state_dict())
    result = base.load_state_dict({k: v for k, v in tensors.items() if k in persistent},
                                  strict=False, assign=True)
    buffers = dict(base.named_buffers())
    for name in set(tensors) - persistent:
        if name in buffers:
            owner, _, attr = name.rpartition(".")
            base.get_submodule(owner)._buffers[attr] = tensors[name]
    head = head_prefixes(base)
    missing = [k for k in result.missing_keys if not (head and k.startswith(head))]
    if missing and ties_weights(base):  # tied weights (a causal LM's head) share the embeddings' tensor
        base.tie_weights()
        missing = [k for k in missing if base.get_parameter(k).device.type == "meta"]
    unknown = sorted(set(tensors) - persistent - set(buffers))
    if missing or unknown:
        raise InputError("numpy_state", f"missing {missing[:3]}, unexpected {unknown[:3]}",
                         "does not match the model built from the config",
                         "export it with backbone_state_numpy from a model of the same config")


def _head_names(base: torch.nn.Module) -> list[str]:
    """The sequence classifier's head modules (none in a causal LM, whose LM head stays frozen)."""
    return [name for name, _ in base.named_children() if name in HEAD_MODULE_NAMES]


def head_prefixes(base: torch.nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name in _head_names(base))


def ties_weights(base: torch.nn.Module) -> bool:
    """Whether the model ties weights (e.g. its LM head to the input embeddings)."""
    config = getattr(base, "config", None)
    return bool(getattr(config, "tie_word_embeddings", False)) or bool(getattr(base, "_tied_weights_keys", None))


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
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for the block, then restore the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
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
