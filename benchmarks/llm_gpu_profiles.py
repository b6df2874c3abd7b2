"""Block profiles of real decoder shapes on a GPU, without their weights (issue #13).

Timing and memory need no trained weights: the script builds randomly initialised models with the
published hyperparameters of Qwen2.5-0.5B and Llama-3.2-1B (from their config.json on the hub),
puts LoRA r=8 on q_proj/v_proj, and profiles every decoder block in bfloat16 (forward + backward to
the block, CUDA peak memory) at batch 4 and sequence 512, writing ``deft_ray/profiles/<name>_<gpu>_bf16.json``.
It needs a CUDA device and no network; one run takes a few minutes.

    python benchmarks/llm_gpu_profiles.py [--batch 4] [--seq 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

#: Published shapes (the models' config.json), everything a profile depends on.
SHAPES = {
    "qwen2.5-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                          num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                          max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True)),
    "llama-3.2-1b": ("LlamaConfig", dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                         max_position_embeddings=131072, rope_theta=5e5, tie_word_embeddings=True,
                                         head_dim=64)),
}


def main() -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from deft_ray.learning.causal_lm import CausalBlockModel
    from deft_ray.learning.lora import LoraSpec
    from deft_ray.learning.model import seeded
    from deft_ray.learning.profiling import profile_blocks, write_profile
    from deft_ray.planners import BlockCost, make_blocks_monotone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "deft_ray" / "profiles"))
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name()
    tag = gpu.split()[-1].lower() if gpu else platform.machine()
    for name, (config_class, shape) in SHAPES.items():
        config = getattr(transformers, config_class)(**shape)
        with seeded(0), torch.device("cuda"):
            base = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        lora = LoraSpec(model_kind="causal-lm", backbone_dtype="bfloat16")
        model = CausalBlockModel._wrap_causal(base, lora=lora, seed=0, use_dropout=False)
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(5, config.vocab_size, (args.batch, args.seq), generator=generator)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        rows = profile_blocks(model, batch, repeats=args.repeats, warmup=2)
        raw = [BlockCost(**row) for row in rows]
        monotone, notes = make_blocks_monotone(raw)
        profile = {"model": f"{name} (random weights, published shape)", "measured_on": f"cuda: {gpu}",
                   "torch": torch.__version__, "transformers": transformers.__version__, "dtype": "bfloat16",
                   "batch": args.batch, "seq": args.seq, "repeats": args.repeats,
                   "lora": {"r": lora.rank, "alpha": lora.alpha, "targets": list(model.lora.target_modules),
                            "model_kind": "causal-lm"},
                   "note": "compute_s: median of forward + backward to the block; memory_bytes: CUDA peak, the whole "
                           "bfloat16 backbone included; made monotone: " + ("; ".join(notes) or "already monotone"),
                   "raw_compute_s": [b.compute_s for b in raw],
                   "blocks": [{"compute_s": b.compute_s, "memory_bytes": b.memory_bytes, "payload_bits": b.payload_bits}
                              for b in monotone]}
        out = Path(args.out_dir) / f"{name}_{tag}_bf16.json"
        write_profile(profile, out)
        print(f"{name}: block 0 {raw[0].compute_s * 1e3:.1f} ms, last {raw[-1].compute_s * 1e3:.1f} ms, "
              f"memory {raw[0].memory_bytes / 1e9:.2f} -> {raw[-1].memory_bytes / 1e9:.2f} GB -> {out}")
        del model, base
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
