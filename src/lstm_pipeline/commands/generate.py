"""``lstm-pipeline generate``: ``run(cfg)``.

Three modes: one prompt (``prompt=``, streamed to the terminal), a file of prompts
(``prompts_file=``, one a line, written as JSON lines) and a prompt loop (``interactive=true``).
"""
from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..atomic import atomic_write
from ..config.schema import to_dict
from ..generation.generator import TextGenerator


def interpret_escapes(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` as typed on a command line (Hydra keeps the backslash) ->
    newline, tab, carriage return, backslash. Other characters are kept as they are."""
    import re

    return re.sub(r"\\([ntr\\])", lambda m: {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[m.group(1)], text)


class Generator:
    """The CLI's job settings over the one generation entry point (:class:`TextGenerator`)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        decoding = to_dict(cfg.decoding)  # checked with the rest of cfg (config.checks.check) before this;
        # the decoder is built once, here, over the model's default decoding
        self.gen = TextGenerator.load(str(cfg.run), device=cfg.device, quantize=cfg.quantize)
        self.decoder = self.gen.decoder(decoding)
        self.tokenizer, self.config = self.gen.tokenizer, self.gen.config
        self.eos_token_id = self.gen.eos_token_id(cfg.eos_token)
        self.rng = torch.Generator(device=cfg.device)
        if cfg.seed is not None:
            self.rng.manual_seed(int(cfg.seed))
        else:
            self.rng.seed()
        self.stop_strings = [interpret_escapes(str(s)) for s in OmegaConf.to_container(cfg.stop_strings)] \
            if cfg.stop_strings else []

    def generate(self, prompts: list[str], stream=None, what: str = "prompt"):
        return self.gen.generate(prompts, decoding=self.decoder, max_new_tokens=self.cfg.max_new_tokens,
                                 generator=self.rng, eos_token=self.cfg.eos_token, stop_strings=self.stop_strings,
                                 max_time=self.cfg.max_time, on_unknown=self.cfg.on_unknown, stream=stream, what=what)

    # -- modes -------------------------------------------------------------------------
    def one_prompt(self, prompt: str, out=None) -> list[str]:
        out = out or sys.stdout
        texts = []
        stream = self.cfg.stream and self.decoder.streams
        for i in range(self.cfg.num_samples):
            if self.cfg.num_samples > 1:
                print(f"--- sample {i + 1} ---", file=out)
            completions = self.generate([prompt], stream=out if stream else None)
            for j, c in enumerate(completions):
                if not stream:
                    if len(completions) > 1:
                        print(f"--- sequence {j + 1} (score {c.score:.4f}) ---", file=out)
                    print(c.prompt + c.text, file=out)
                texts.append(c.prompt + c.text)
            out.flush()
        return texts

    def prompts_file(self) -> list[dict]:
        lines = Path(self.cfg.prompts_file).read_text(encoding="utf-8-sig").splitlines()
        for i, p in enumerate(lines):  # every line checked before any generation
            self.gen.encode(p, self.cfg.on_unknown, what=f"prompt on line {i + 1} of {self.cfg.prompts_file}")
        records = []
        # the output file is whole or absent: written to a temporary sibling, renamed when every prompt is done
        with atomic_write(self.cfg.output_file) if self.cfg.output_file else nullcontext(sys.stdout) as sink:
            # every prompt num_samples times, in batches of batch_size rows
            rows = [(i, s) for i in range(len(lines)) for s in range(self.cfg.num_samples)]
            for start in range(0, len(rows), self.cfg.batch_size):
                chunk = rows[start: start + self.cfg.batch_size]
                completions = self.generate([lines[i] for i, _ in chunk])
                per_row = len(completions) // len(chunk)  # beam search returns num_return_sequences each
                for k, c in enumerate(completions):
                    i, s = chunk[k // per_row]
                    rec = {"line": i + 1, "prompt": lines[i], "sample": s * per_row + k % per_row,
                           "text": c.text, "tokens": c.tokens, "score": c.score, "finish_reason": c.finish_reason}
                    sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    records.append(rec)
                sink.flush()
        return records

    def interactive(self) -> list[str]:
        texts = []
        print("Type a prompt and press Enter (an empty line starts from the start-of-text state); "
              "end with Ctrl-D.", file=sys.stderr)
        while True:
            print("> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:  # end of input
                break
            prompt = line.rstrip("\r\n")
            try:
                texts += self.one_prompt(prompt)
            except ValueError as exc:  # e.g. unknown characters: report and keep the loop going
                print(f"error: {exc}", file=sys.stderr)
        return texts


def run(cfg: DictConfig):
    """Generate from ``cfg.run``'s model: one prompt, a prompts file, or the interactive loop; returns the texts."""
    gen = Generator(cfg)
    if cfg.prompts_file is not None:
        return gen.prompts_file()
    if cfg.interactive:
        return gen.interactive()
    return gen.one_prompt(cfg.prompt)
