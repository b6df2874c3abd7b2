"""Does cooperative fine-tuning instruction-tune a decoder LLM as well as centralised LoRA? (issue #13)

No decoder weights can be downloaded here, so the script makes its own foundation model:

1. builds a small Llama offline (6 decoder layers, hidden size 64, a character tokenizer with a
   chat template) and pre-trains it centrally, every weight, as a plain causal LM on a synthetic
   corpus of statements ("qwert backwards is trewq.", "23 plus 48 is 71.", ...) and of chats in
   which the assistant repeats the user's words, until it models it; it then knows the five
   operations of ``synthetic-instructions`` and its chat tokens, but not the instructions;
2. saves it (model and tokenizer), and scores it on synthetic-instructions as it is;
3. fine-tunes it with deft-ray (12 devices, jbba, on Ray, virtual clock, Rayleigh fading on, so
   the plan changes each round), once with each device holding a twelfth of the data (``iid``) and
   once with every device drawing from all of it (``shared``), and with centralised LoRA for the
   same number of optimizer steps (one batch per step, every block at once) in three batch orders,
   whose spread is the noise floor; same seed, optimizer, learning rate and schedule (cosine by
   default, so the last steps' noise stays out of the final loss); it prints the eval losses,
   their ratio to the centralised mean, perplexities and exact-match rates next to the pre-trained
   model's;
4. measures the decoder's block profile at the task's sequence length (one thread) and writes it
   where ``deft-ray plan --profile`` reads it.

    python benchmarks/llm.py [--rounds 400] [--pretrain-steps 3000] [--partitions iid,shared] [--schedule cosine]
                             [--central-seeds 0,1,2] [--pretrained FOLDER] [--out runs/benchmark-llm]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deft_ray.config import RunConfig, config_from_dict, to_dict
from deft_ray.runner import run

#: The statement form of each synthetic-instructions operation in the pre-training corpus.
STATEMENTS = {"reverse": "{0} backwards is {ans}.", "upper": "{0} in capitals is {ans}.",
              "sort": "{0} in order is {ans}.", "add": "{0} plus {1} is {ans}.", "subtract": "{0} minus {1} is {ans}."}
SEQ_LENGTH = 48
CHAT_SHARE = 0.25
"""Share of pre-training lines that are chats (the assistant repeats the user), as an instruct base model's are."""
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LoRA on every projection of the decoder layers (an explicit list; ``auto`` would be q_proj/v_proj)."""


def corpus(seed: int, size: int, *, chat_share: float = 0.0) -> list[str]:
    """Statements of the operations and, for ``chat_share`` of the lines, chats in which the
    assistant repeats the user's words: the model learns its chat tokens, not the instructions."""
    from deft_ray.learning.synthetic_instructions import LETTERS, draw_example

    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(size):
        if rng.random() < chat_share:
            words = " ".join("".join(rng.choice(LETTERS, size=int(rng.integers(2, 7))))
                             for _ in range(int(rng.integers(1, 4))))
            lines.append(f"<|user|>{words}\n<|assistant|>{words}")
        else:
            operation, arguments, answer = draw_example(rng)
            lines.append(STATEMENTS[operation].format(*arguments, ans=answer))
    return lines


def pretrain(folder: Path, *, steps: int, batch_size: int, lr: float, console: Console) -> dict[str, float]:
    """Train every weight of the decoder in ``folder`` on the corpus; save it back. Returns the
    held-out corpus loss (nats per token) and the share of held-out statements whose answer the
    model completes exactly (greedy), before and after."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    train_lines, held_lines = corpus(1, 50_000, chat_share=CHAT_SHARE), corpus(2, 256)

    def encode(lines):
        rows = [tokenizer(line)["input_ids"][:SEQ_LENGTH - 1] + [tokenizer.eos_token_id] for line in lines]
        width = max(map(len, rows))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        labels = ids.masked_fill(mask == 0, -100)
        return ids, mask, labels

    def held_out() -> dict[str, float]:
        model.eval()
        ids, mask, labels = encode(held_lines)
        with torch.no_grad():
            loss = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
        correct = 0
        for line in held_lines[:64]:
            stem, answer = line.rsplit(" is ", 1)
            prompt = tokenizer(stem + " is ", return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**prompt, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
            text = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += text.strip() == answer
        model.train()
        return {"loss": loss, "answer_exact": correct / 64}

    before = held_out()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        ids, mask, labels = encode([train_lines[i] for i in rng.integers(len(train_lines), size=batch_size)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 500 == 0 or step == steps:
            console.print(f"pre-training step {step:5d}  loss {float(loss.detach()):.3f}  {time.perf_counter() - start:.0f} s")
    after = held_out()
    model.save_pretrained(folder)
    return {"before_loss": before["loss"], "before_answer_exact": before["answer_exact"],
            "after_loss": after["loss"], "after_answer_exact": after["answer_exact"],
            "wall_s": time.perf_counter() - start}


def centralised(config: RunConfig, *, steps: int, batch_seed: int) -> tuple[dict[str, float], dict[str, float], float]:
    """Plain LoRA fine-tuning of the same model: ``steps`` AdamW steps on batches drawn from the
    whole training set (in the order ``batch_seed`` draws), every block trained at once, with the
    run's learning-rate schedule. Returns the pre-trained model's evaluation (the LoRA starts at
    zero), the final evaluation and the wall time."""
    from deft_ray.learning.centralised import train_centrally
    from deft_ray.learning.validation import evaluate_adapter
    from deft_ray.runtime.build import prepare

    prepared = prepare(config)
    model = prepared.model
    before = evaluate_adapter(model, prepared.evaluation)
    start = time.perf_counter()
    optimizer = config.optimizer.build(list(model.named_trainable_parameters().values()))
    train_centrally(model, prepared.train_columns, optimizer, steps=steps, batch_size=config.data.batch_size,
                    seed=batch_seed, schedule=config.optimizer.build_schedule(optimizer, total_steps=steps))
    return before, evaluate_adapter(model, prepared.evaluation), time.perf_counter() - start


def prepared_targets(config: RunConfig) -> tuple[str, ...]:
    return ("auto",) if config.model.target_modules == "auto" else tuple(config.model.target_modules)


def main() -> None:
    import torch

    from deft_ray.learning.profiling import measure_profile, write_profile
    from deft_ray.learning.tiny_decoders import write_tiny_decoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--pretrain-steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=3e-3, help="fine-tuning learning rate (AdamW)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="LoRA modules, comma-separated, or auto")
    parser.add_argument("--out", default="runs/benchmark-llm")
    parser.add_argument("--pretrained", metavar="FOLDER", help="reuse a decoder this script pre-trained before")
    parser.add_argument("--schedule", default="cosine", choices=["constant", "linear", "cosine"],
                        help="learning-rate schedule of both runs (a decaying one keeps the last steps' noise out of the final loss)")
    parser.add_argument("--partitions", default="iid,shared",
                        help="deft-ray runs, comma-separated: iid (each device holds a twelfth of the data) and/or "
                             "shared (every device draws from all of it)")
    parser.add_argument("--central-seeds", default="0,1,2",
                        help="batch orders of the centralised runs, comma-separated: their spread is the noise floor")
    parser.add_argument("--static-channels", action="store_true",
                        help="no Rayleigh fading: the plan, so each block's device and data, never changes")
    parser.add_argument("--profile-out", default=str(Path(__file__).resolve().parents[1] / "deft_ray" / "profiles"
                                                     / "tiny-llama-6x64_cpu_fp32.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # more threads than free cores slow a small model many times over
    console = Console()
    out = Path(args.out)
    folder = Path(args.pretrained) if args.pretrained else out / "pretrained"
    pre = None
    if not args.pretrained:
        write_tiny_decoder(folder, family="llama", num_layers=6, hidden_size=64, seed=0)
        pre = pretrain(folder, steps=args.pretrain_steps, batch_size=64, lr=3e-3, console=console)
        console.print(f"pre-training: held-out corpus loss {pre['before_loss']:.3f} -> {pre['after_loss']:.3f} "
                      f"nats/token, answers completed exactly {pre['before_answer_exact']:.2f} -> "
                      f"{pre['after_answer_exact']:.2f}, {pre['wall_s']:.0f} s")

    data = to_dict(RunConfig())
    data.update(rounds=args.rounds, eval_every=max(args.rounds // 3, 1), seed=0)
    data["model"].update(name_or_path=str(folder.resolve()), max_length=SEQ_LENGTH,
                         target_modules="auto" if args.targets == "auto" else args.targets.split(","))
    data["data"].update(task="synthetic-instructions", batch_size=16, max_eval_examples=300, exact_match_examples=300,
                        max_new_tokens=8)
    data["optimizer"].update(lr=args.lr, schedule=args.schedule, warmup_rounds=args.rounds // 20)
    # With fixed channels JBBA's plan is the same every round, so every block would learn from one
    # device's twelfth of the data only; fading redraws the channels and so the plan each round.
    data["network"].update(rayleigh_fading=not args.static_channels)
    runs = {}
    for partition in args.partitions.split(","):
        data["data"].update(partition=partition)
        config = config_from_dict(data)
        start = time.perf_counter()
        summary = run(config, out_dir=out / f"deft-{partition}", console=console, overwrite=True, quiet=True)
        runs[partition] = (summary, time.perf_counter() - start)
    centrals = {}
    for seed in map(int, args.central_seeds.split(",")):
        before, centrals[seed], central_wall_s = centralised(config, steps=args.rounds, batch_seed=seed)
    central_loss = float(np.mean([c["eval_loss"] for c in centrals.values()]))

    table = Table(title=f"synthetic-instructions, pre-trained 6-layer Llama (hidden 64), LoRA r={config.model.lora_rank} "
                        f"on {','.join(prepared_targets(config))}, batch {config.data.batch_size}, {config.rounds} optimizer "
                        f"steps, lr {args.lr:g} {args.schedule}")
    for column in ("model", "eval loss", "/ centralised", "perplexity", "exact match", "wall s", "emulated s"):
        table.add_column(column, justify="right")

    def row(name, scores, wall="-", emulated="-"):
        table.add_row(name, f"{scores['eval_loss']:.4f}", f"{scores['eval_loss'] / central_loss:.3f}",
                      f"{scores['perplexity']:.3f}", f"{scores['exact_match']:.3f}", wall, emulated)

    row("pre-trained, no fine-tuning", before)
    for seed, scores in centrals.items():
        row(f"centralised LoRA, batch order {seed}", scores, f"{central_wall_s:.0f}")
    for partition, (summary, wall_s) in runs.items():
        row(f"deft-ray, {config.num_devices} devices, {config.scheme}, Ray, {partition} data", summary.final_evaluation,
            f"{wall_s:.0f}", f"{summary.emulated_time_s:.1f}")
    console.print(table)
    spread = [c["eval_loss"] / central_loss for c in centrals.values()]
    console.print(f"Rayleigh fading {'off' if args.static_channels else 'on'}; centralised runs span "
                  f"{min(spread):.3f}-{max(spread):.3f} of their mean eval loss {central_loss:.4f}")
    for partition, (summary, _) in runs.items():
        ratio = summary.final_evaluation["eval_loss"] / central_loss
        console.print(f"deft-ray ({partition} data) eval loss / centralised mean = {ratio:.4f} (target: within 2%, "
                      f"{'met' if abs(ratio - 1) <= 0.02 else 'NOT met'}); exact match "
                      f"{summary.final_evaluation['exact_match']:.3f} against {before['exact_match']:.3f} before fine-tuning")

    profile = measure_profile(str(folder.resolve()), batch_size=config.data.batch_size, seq_length=SEQ_LENGTH,
                              repeats=9, threads=1)
    profile["model"] = "tiny-llama-6x64 (benchmarks/llm.py: 6-layer Llama, hidden 64, pre-trained on its corpus)"
    write_profile(profile, args.profile_out)
    console.print(f"block profile (batch {config.data.batch_size}, seq {SEQ_LENGTH}, one thread) -> {args.profile_out}")
    results = {"rayleigh_fading": not args.static_channels, "schedule": args.schedule, "pretraining": pre,
               "pretrained": before, "centralised": {str(k): v for k, v in centrals.items()},
               "centralised_mean_eval_loss": central_loss,
               "deft": {p: {"evaluation": s.final_evaluation, "wall_s": w, "emulated_time_s": s.emulated_time_s,
                            "eval_loss_over_centralised": s.final_evaluation["eval_loss"] / central_loss}
                        for p, (s, w) in runs.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    console.print(f"pre-trained decoder: {folder} (deft-ray run --config configs/llm-tiny.yaml --model {folder})")


if __name__ == "__main__":
    main()
