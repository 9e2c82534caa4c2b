"""``generate_cmd(cfg)``: the plain function behind ``lstm-pipeline generate``."""
from __future__ import annotations

import sys

import torch
from omegaconf import DictConfig

from ..config import to_dict
from ..hub import load_pretrained
from ..registry import DECODERS
from .streamer import TextStreamer


def generate_cmd(cfg: DictConfig) -> list[str]:
    decoder = DECODERS.build(to_dict(cfg.decoding))  # bad settings fail before the model loads
    if cfg.max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {cfg.max_new_tokens}")
    if cfg.num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {cfg.num_samples}")
    model, tokenizer, config = load_pretrained(cfg.run, map_location=cfg.device)
    prompt_ids = tokenizer.encode_checked(cfg.prompt, on_unknown=cfg.on_unknown, what="prompt")
    generator = torch.Generator(device=cfg.device)
    if cfg.seed is not None:
        generator.manual_seed(int(cfg.seed))
    else:
        generator.seed()
    texts = []
    for i in range(cfg.num_samples):
        if cfg.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        streamer = TextStreamer(tokenizer, sys.stdout, prompt=cfg.prompt) if cfg.stream else None
        result = decoder.generate(model, [prompt_ids], max_new_tokens=cfg.max_new_tokens,
                                  bos_token_id=config.get("bos_token_id", 0), streamer=streamer, generator=generator)
        text = cfg.prompt + tokenizer.decode(result.sequences[0])
        if not cfg.stream:
            print(text)
        texts.append(text)
    return texts
