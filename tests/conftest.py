"""Fixtures shared by the runtime tests: a tiny model folder and a local Ray."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process as soon as pytest has reported, with pytest's own exit status.

    The suite starts and stops a local Ray in many modules of one process. On CI the process once
    crashed with SIGSEGV in the interpreter's teardown after every test had passed and pytest had
    printed its summary (exit status 139 in place of 0), and no run here has repeated it. The
    teardown of native libraries is no part of what the suite checks (the tests that run
    ``deft-ray`` as a program check its exit status themselves), so the suite's verdict is
    pytest's, not that of the teardown. ``DEFT_RAY_TEST_TEARDOWN=1`` keeps the teardown.
    """
    exit_status = getattr(config, "_deft_ray_exit_status", None)
    if exit_status is None or os.environ.get("DEFT_RAY_TEST_TEARDOWN") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(exit_status))


def pytest_sessionfinish(session, exitstatus):
    session.config._deft_ray_exit_status = exitstatus


TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def write_tiny_model(path: str, *, family: str = "bert", num_layers: int = 4,
                   hidden_size: int = 32, num_labels: int = 2, seed: int = 0) -> str:
    """Write a tiny random BERT or RoBERTa (config, backbone weights, MiniLM's tokenizer) to ``path``.

    The folder loads like a real model with ``AutoTokenizer`` and
    ``AutoModelForSequenceClassification``; both families use MiniLM's 30522-token vocabulary.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, RobertaConfig

    from deft_ray.learning.model import head_prefixes, quiet_transformers, seeded
    from deft_ray.learning.pretrained import default_model_path

    families = {"bert": BertConfig, "roberta": RobertaConfig}
    vocab_size = AutoConfig.from_pretrained(default_model_path()).vocab_size
    config = families[family](
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=514,
        num_labels=num_labels, pad_token_id=0, **({"type_vocab_size": 1} if family == "roberta" else {}))
    with seeded(seed):
        model = AutoModelForSequenceClassification.from_config(config)
    head = head_prefixes(model)
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    with quiet_transformers():
        model.save_pretrained(path, state_dict=backbone)  # like a pretrained checkpoint: no head
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(default_model_path(), name), os.path.join(path, name))
    return str(path)


@pytest.fixture(scope="session")
def tiny_model_factory():
    """:func:`write_tiny_model`, for tests that build their own tiny models."""
    return write_tiny_model


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return write_tiny_model(str(tmp_path_factory.mktemp("tiny-bert")), family="bert", num_layers=4, hidden_size=32)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs for the module's tests (Ray takes seconds to start)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; many threads on a busy machine are 50x slower."""
    import torch

    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)
