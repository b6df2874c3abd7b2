"""The causal-LM tasks: instruction files in every accepted format and layout, the checks of bad
rows, the built-in synthetic-instructions, response-only labels, greedy generation and metric direction."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deft_ray.errors import InputError
from deft_ray.learning import tasks
from deft_ray.learning.causal_batches import IGNORE_INDEX, generation_set, render_prompt, tokenize_causal
from deft_ray.learning.metrics import best, higher_is_better, reaches
from deft_ray.learning.tiny_decoders import char_tokenizer

ALPACA = [{"instruction": "add the numbers", "input": "2 3", "output": "5"},
          {"instruction": "say hi", "input": "", "output": "hi"},
          {"instruction": "say yo", "output": "yo"}]
CHAT = [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 2 3"},
                      {"role": "assistant", "content": "5"}]},
        {"messages": [{"role": "user", "content": "say hi"}, {"role": "assistant", "content": "hi"}]}]
PAIRS = [{"prompt": "add 2 3", "response": "5"}, {"prompt": "say hi", "response": "hi"}]


def write(path: Path, rows: list[dict]) -> str:
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for row in rows for k in row}))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return str(path)


def load(train: str, evaluation: str | None = None, task: str = "instruction") -> tasks.TaskData:
    return tasks.load_task(task, train_file=train, eval_file=evaluation, seed=0)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_alpaca_and_prompt_response_rows_load_from_every_format(tmp_path, suffix):
    data = load(write(tmp_path / f"train{suffix}", ALPACA), write(tmp_path / f"eval{suffix}", PAIRS))
    assert data.train["prompt"] == ["add the numbers\n\n2 3", "say hi", "say yo"]
    assert data.train["response"] == ["5", "hi", "yo"]
    assert data.validation["prompt"] == ["add 2 3", "say hi"] and data.validation["response"] == ["5", "hi"]


def test_chat_rows_keep_the_turns_before_the_answer(tmp_path):
    data = load(write(tmp_path / "chat.jsonl", CHAT), write(tmp_path / "eval.json", CHAT))
    assert data.train["response"] == ["5", "hi"]
    assert json.loads(data.train["messages"][0]) == CHAT[0]["messages"][:2]


def test_chat_turns_in_a_csv_cell_are_json(tmp_path):
    rows = [{"messages": json.dumps(CHAT[1]["messages"]), "prompt": ""}]
    data = load(write(tmp_path / "chat.csv", rows), write(tmp_path / "eval.csv", rows))
    assert data.train["response"] == ["hi"] and json.loads(data.train["messages"][0]) == CHAT[1]["messages"][:1]


def test_without_an_eval_file_a_seeded_share_is_held_out(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(100)]
    data = load(write(tmp_path / "train.jsonl", rows))
    assert len(data.train) == 95 and len(data.validation) == 5
    assert not set(data.train["prompt"]) & set(data.validation["prompt"])
    assert load(write(tmp_path / "again.jsonl", rows)).validation["prompt"] == data.validation["prompt"]


def test_text_task_reads_the_text_field(tmp_path):
    data = load(write(tmp_path / "t.jsonl", [{"text": "one two"}, {"text": "three"}]),
                write(tmp_path / "e.jsonl", [{"text": "four"}]), task="text")
    assert data.train["response"] == ["one two", "three"] and data.train["prompt"] == ["", ""]


@pytest.mark.parametrize("rows, where, field, problem", [
    ([{"instruction": "a", "output": "b"}, {"instruction": "c"}], "line 2", "'output'", "is missing"),
    ([{"prompt": "a", "response": ""}], "line 1", "'response'", "must be non-empty text"),
    ([{"prompt": "a", "response": 3}], "line 1", "'response'", "must be non-empty text"),
    ([{"question": "a", "answer": "b"}], "line 1", "", "has none of the fields"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "line 1", "'messages'", "assistant answer"),
    ([{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}], "line 1", "'messages'[0]",
     "is not a {role, content} turn"),
])
def test_a_bad_row_names_the_file_the_row_and_the_field(tmp_path, rows, where, field, problem):
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError, match="bad.jsonl") as raised:
        load(path)
    message = str(raised.value)
    assert f"{path} {where}" in message and problem in message and "\n" not in message
    if field:
        assert f"field {field}" in message


def test_empty_files_bad_json_and_unknown_formats(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="data.train_file = .*empty.jsonl.*has no rows"):
        load(str(tmp_path / "empty.jsonl"))
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": \n')
    with pytest.raises(InputError, match=r"broken.jsonl line 2 = .*is not valid JSON"):
        load(str(tmp_path / "broken.jsonl"))
    (tmp_path / "rows.txt").write_text("a")
    with pytest.raises(InputError, match="suffix '.txt'"):
        load(str(tmp_path / "rows.txt"))
    with pytest.raises(InputError, match="data.train_file = None: task 'instruction' needs examples"):
        tasks.load_task("instruction")


def test_a_bad_file_stops_the_command_with_exit_2_and_one_line_before_ray(tmp_path):
    path = write(tmp_path / "train.csv", [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": ""}])
    result = subprocess.run([sys.executable, "-m", "deft_ray.cli", "run", "--local", "--out", str(tmp_path / "run"),
                             "--set", "data.task=instruction", "--set", f"data.train_file={path}",
                             "--set", "model.name_or_path=builtin:tiny-decoder"],
                            capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                              "DEFT_RAY_CACHE": str(tmp_path)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and f"{path} line 3 field 'output'" in lines[0], lines


def test_synthetic_instructions_are_deterministic_disjoint_and_exact():
    data = tasks.load_task("synthetic-instructions", seed=3)
    again = tasks.load_task("synthetic-instructions", seed=3)
    assert data.train["prompt"] == again.train["prompt"] and len(data.train) == 4000 and len(data.validation) == 300
    assert not set(data.train["prompt"]) & set(data.validation["prompt"])
    assert len(set(data.train["prompt"])) == len(data.train)
    operations = set()
    for prompt, response in zip(data.validation["prompt"], data.validation["response"]):
        operation, *arguments = prompt.split(" ")
        operations.add(operation)
        expected = {"reverse": lambda w: "".join(reversed(w)), "upper": str.upper,
                    "sort": lambda w: "".join(sorted(w)),
                    "add": lambda a, b: str(int(a) + int(b)), "subtract": lambda a, b: str(int(a) - int(b))}
        assert response == expected[operation](*arguments), prompt
    assert operations == {"reverse", "upper", "sort", "add", "subtract"}
    assert tasks.load_task("synthetic-instructions", seed=4).train["prompt"] != data.train["prompt"]


def test_labels_fall_on_the_response_and_its_end_token_only():
    tokenizer = char_tokenizer()
    data = tasks.TaskData(tasks.get_task("synthetic-instructions"), *_splits(["add 2 3"], ["5"]))
    tokenized = tokenize_causal(data, tokenizer, max_length=24)
    ids, mask, labels = (tokenized.train[k][0].tolist() for k in ("input_ids", "attention_mask", "labels"))
    prompt = "<|user|>add 2 3\n<|assistant|>"
    width = len(tokenizer(prompt)["input_ids"])
    assert tokenizer.decode(ids[:sum(mask)], skip_special_tokens=False) == prompt + "5<eos>"
    assert labels[:width] == [IGNORE_INDEX] * width
    assert labels[width:width + 2] == [tokenizer.convert_tokens_to_ids("5"), tokenizer.eos_token_id]
    assert set(labels[width + 2:]) == {IGNORE_INDEX} and len(ids) == 24


def test_without_a_chat_template_prompts_use_the_alpaca_layout():
    tokenizer = char_tokenizer()
    tokenizer.chat_template = None
    assert render_prompt(tokenizer, "say hi", "") == ("### Instruction:\nsay hi\n\n### Response:\n", False)
    turns = json.dumps([{"role": "user", "content": "hi"}])
    assert render_prompt(tokenizer, "", turns) == ("user: hi\nassistant: ", False)


def test_an_overlong_example_keeps_the_end_of_its_prompt_and_some_response():
    tokenizer = char_tokenizer()
    data = tasks.TaskData(tasks.get_task("instruction"), *_splits(["x" * 100], ["answer"]))
    labels = tokenize_causal(data, tokenizer, max_length=16).train["labels"][0].tolist()
    assert len(labels) == 16 and sum(label != IGNORE_INDEX for label in labels) == 7  # "answer" + <eos>


def test_batched_greedy_generation_equals_one_prompt_at_a_time(tmp_path):
    from deft_ray.learning.generation import generate_answers
    from deft_ray.learning.lora import LoraSpec
    from deft_ray.learning.model import BlockModel
    from deft_ray.learning.tiny_decoders import write_tiny_decoder

    path = write_tiny_decoder(tmp_path / "llama", family="llama", num_layers=2, seed=2)
    model = BlockModel.from_pretrained(path, num_labels=0, lora=LoraSpec(model_kind="causal-lm"), seed=0)
    prompts = ["add 2 3", "reverse abcdef", "upper q", "sort zyxwvutsr"]
    validation = _splits(prompts, ["5", "fedcba", "Q", "rstuvwxyz"])[1]
    batched = generation_set(validation, char_tokenizer(), max_examples=4, max_length=40, max_new_tokens=6)
    assert batched.prompt_mask[:, 0].tolist() != [1, 1, 1, 1]  # left padding was needed
    answers = generate_answers(model, batched)
    for i in range(4):
        single = generation_set(validation.select([i]), char_tokenizer(), max_examples=1, max_length=40,
                                max_new_tokens=6)
        assert generate_answers(model, single) == [answers[i]]


def test_metric_direction():
    assert higher_is_better("exact_match") and higher_is_better("accuracy") and not higher_is_better("eval_loss")
    assert reaches("eval_loss", 1.9, 2.0) and not reaches("eval_loss", 2.1, 2.0)
    assert reaches("accuracy", 0.9, 0.85) and not reaches("perplexity", 7.5, 7.0)
    assert best("perplexity", [9.0, 7.0, 8.0]) == 7.0 and best("exact_match", [0.1, 0.4, 0.3]) == 0.4


def _splits(prompts: list[str], responses: list[str]):
    import datasets

    columns = {"prompt": prompts, "response": responses, "messages": [""] * len(prompts)}
    split = datasets.Dataset.from_dict(columns)
    return split, split
