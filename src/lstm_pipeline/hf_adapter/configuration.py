"""``LstmPipelineConfig``: our ``config.json`` read as a ``transformers`` config. Our own keys
(``model``, ``vocab_size``, ``format``...) stay as they are; transformers' keys sit beside them."""
from __future__ import annotations

from typing import Any

try:
    from transformers import PreTrainedConfig
except ImportError:  # transformers < 5
    from transformers import PretrainedConfig as PreTrainedConfig

from ..artifacts.model_dir import HF_MODEL_TYPE


class LstmPipelineConfig(PreTrainedConfig):
    model_type = HF_MODEL_TYPE

    def __init__(self, vocab_size: int = 256, model: dict[str, Any] | None = None, use_cache: bool = True,
                 **kwargs):
        self.vocab_size = vocab_size
        # the RecurrentLM settings (cell, hidden_size, num_layers, ...) exactly as our config.json has them
        self.model = dict(model or {"cell": {"name": "lstm"}})
        self.use_cache = use_cache
        self.hidden_size = self.model.get("hidden_size", 256)
        self.num_hidden_layers = self.model.get("num_layers", 2)
        kwargs.setdefault("tie_word_embeddings", bool(self.model.get("tie_weights", False)))
        super().__init__(**kwargs)
