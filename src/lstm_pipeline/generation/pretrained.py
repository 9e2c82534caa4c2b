"""A loaded model as one object: :func:`from_pretrained` (a run directory, a model directory or a
Hub repo id) returns a :class:`PretrainedLM`, which generates through :class:`TextGenerator`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ..artifacts.hub import push_to_hub, resolve_pretrained
from ..artifacts.model_dir import (
    _OWN_CONFIG_KEYS,
    generation_config,
    load_pretrained,
    save_pretrained,
)
from ..kernels.int8 import quantize_model
from ..models.lm import RecurrentLM
from ..tokenization.base import TextTokenizer
from .generator import TextGenerator
from .strategies import DecodingStrategy


def card_sample(model, tokenizer, config: Mapping[str, Any], decoding: Mapping[str, Any]) -> tuple[str, str]:
    """(prompt, text) of the model card's sample: ``config["sample"]``'s prompt, seed 0, at most 300
    tokens; an unknown word stays in the text as ``<unk>``, in context."""
    sample_cfg = config.get("sample") or {}
    prompt = str(sample_cfg.get("prompt", ""))
    done = TextGenerator(model, tokenizer, config).generate(
        prompt, decoding=decoding, max_new_tokens=min(int(sample_cfg.get("max_new_tokens", 200) or 200), 300),
        seed=0, on_unknown="replace")[0]
    return prompt, done.text


class PretrainedLM:
    """What :func:`from_pretrained` returns: the model, its tokenizer and config, and the directory
    it was read from. Call it like the model; ``generate(text)``, ``save_pretrained(dir)`` and
    ``push_to_hub(repo_id)`` work on the whole."""

    def __init__(self, model: RecurrentLM, tokenizer: TextTokenizer, config: dict, model_dir: Path):
        self.model, self.tokenizer, self.config, self.model_dir = model, tokenizer, config, Path(model_dir)

    def __call__(self, tokens: torch.Tensor, state=None):
        return self.model(tokens, state)

    def __repr__(self) -> str:
        return f"PretrainedLM({self.model_dir}, vocab_size={self.model.vocab_size}, model={self.config['model']})"

    def generation_config(self) -> dict:
        path = self.model_dir / "generation_config.json"
        return json.loads(path.read_text()) if path.is_file() else generation_config(
            None, self.config.get("bos_token_id"), self.config.get("eos_token_id"),
            pad_token_id=self.config.get("pad_token_id"))

    def text_generator(self):
        """This model as a :class:`lstm_pipeline.generation.generator.TextGenerator` (the one generation
        entry point, which :meth:`generate` uses)."""
        return TextGenerator(self.model, self.tokenizer, self.config, self.model_dir)

    def generate(self, prompt: str = "", max_new_tokens: int = 100,
                 decoding: str | Mapping[str, Any] | DecodingStrategy | None = None,
                 seed: int | None = None, on_unknown: str = "error", eos_token: str | None = None) -> str:
        """Text after ``prompt`` (``prompt + result`` is the whole) with the given decoding: a decoder's
        name (``"greedy"``), a mapping of its settings (``{"name": "sample", "temperature": 0.7}``;
        settings without a ``name`` change the model's default, its generation_config.json), a built
        decoder, or None (the default); another value raises ValueError naming these forms. Generation
        stops at the model's end-of-text token (if it was trained with one; ``eos_token="none"`` opts
        out), which is not part of the text."""
        return self.text_generator().generate(prompt, decoding=decoding, max_new_tokens=max_new_tokens, seed=seed,
                                              on_unknown=on_unknown, eos_token=eos_token)[0].text

    def save_pretrained(self, out_dir: str | Path) -> Path:
        keep = {k: v for k, v in self.config.items() if k not in _OWN_CONFIG_KEYS}
        keep["decoding"] = self.generation_config().get("decoding")
        tk_config = Path(self.model_dir) / "tokenizer_config.json"  # its chat template kept (none: the default)
        keep["chat_template"] = json.loads(tk_config.read_text()).get("chat_template") if tk_config.is_file() else None
        return save_pretrained(self.model, self.config["model"], self.tokenizer, out_dir, extra=keep,
                               sample=card_sample)

    def push_to_hub(self, repo_id: str, **kwargs):
        return push_to_hub(self.model_dir, repo_id, **kwargs)


def from_pretrained(path_or_repo_id: str | Path, revision: str | None = None, cache_dir: str | None = None,
                    local_files_only: bool | None = None, token: str | bool | None = None,
                    map_location: str | torch.device = "cpu", quantize: str | None = None) -> PretrainedLM:
    """Load a model from a run directory, a model directory, or a Hub repo id (``org/name``).
    ``quantize="int8"``: its one-token steps run their matrix products in dynamic int8 on the CPU
    (:func:`quantize_model`); for generation, not training."""
    model_dir = resolve_pretrained(path_or_repo_id, revision, cache_dir, local_files_only, token)
    model, tokenizer, config = load_pretrained(model_dir, map_location)
    return PretrainedLM(quantize_model(model, quantize), tokenizer, config, model_dir)
