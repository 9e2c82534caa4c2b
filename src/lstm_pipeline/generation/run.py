"""``generate_cmd(cfg)``: the plain function behind ``lstm-pipeline generate``.

Three modes: one prompt (``prompt=``, streamed to the terminal), a file of prompts
(``prompts_file=``, one a line, written as JSON lines) and a prompt loop (``interactive=true``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..config import to_dict
from ..hub import load_pretrained
from ..registry import DECODERS
from .streamer import TextStreamer


def _check(cfg: DictConfig) -> None:
    if cfg.max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {cfg.max_new_tokens}")
    if cfg.num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {cfg.num_samples}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.prompts_file is not None and cfg.interactive:
        raise ValueError("prompts_file= and interactive=true are two different modes: choose one.")
    if cfg.output_file is not None and cfg.prompts_file is None:
        raise ValueError("output_file= is written in prompts_file mode only: also pass prompts_file=<file>.")
    if cfg.prompts_file is not None and not Path(cfg.prompts_file).is_file():
        raise FileNotFoundError(f"prompts_file={cfg.prompts_file}: no such file (one prompt a line).")


class Generator:
    """The loaded model and tokenizer plus the job settings; generates for lists of prompts."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.decoder = DECODERS.build(to_dict(cfg.decoding))  # bad settings fail before the model loads
        _check(cfg)
        self.model, self.tokenizer, self.config = load_pretrained(cfg.run, map_location=cfg.device)
        self.eos_token_id = None
        if cfg.eos_token is not None:
            self.eos_token_id = self.tokenizer.token_to_id(cfg.eos_token)
            if self.eos_token_id is None:
                raise ValueError(f"eos_token={cfg.eos_token!r} is not in the tokenizer's vocabulary; "
                                 f"pick a token it knows (e.g. a special token added at training) or leave it null.")
        self.rng = torch.Generator(device=cfg.device)
        if cfg.seed is not None:
            self.rng.manual_seed(int(cfg.seed))
        else:
            self.rng.seed()
        self.stop_strings = list(OmegaConf.to_container(cfg.stop_strings)) if cfg.stop_strings else []

    def encode(self, prompt: str, what: str = "prompt") -> list[int]:
        return self.tokenizer.encode_checked(prompt, on_unknown=self.cfg.on_unknown, what=what)

    def run(self, prompt_ids: list[list[int]], streamer=None):
        return self.decoder.generate(
            self.model, prompt_ids, max_new_tokens=self.cfg.max_new_tokens, eos_token_id=self.eos_token_id,
            bos_token_id=self.config.get("bos_token_id", 0), streamer=streamer, generator=self.rng,
            tokenizer=self.tokenizer, stop_strings=self.stop_strings, max_time=self.cfg.max_time)

    # -- modes -------------------------------------------------------------------------
    def one_prompt(self, prompt: str, out=None) -> list[str]:
        out = out or sys.stdout
        ids = self.encode(prompt)
        texts = []
        stream = self.cfg.stream and self.decoder.streams
        for i in range(self.cfg.num_samples):
            if self.cfg.num_samples > 1:
                print(f"--- sample {i + 1} ---", file=out)
            streamer = TextStreamer(self.tokenizer, out, prompt=prompt, prompt_ids=ids) if stream else None
            result = self.run([ids], streamer)
            for j, seq in enumerate(result.sequences):
                text = prompt + self.tokenizer.continuation(ids, seq)
                if not stream:
                    if len(result.sequences) > 1:
                        print(f"--- sequence {j + 1} (score {result.scores[j]:.4f}) ---", file=out)
                    print(text, file=out)
                texts.append(text)
            out.flush()
        return texts

    def prompts_file(self) -> list[dict]:
        lines = Path(self.cfg.prompts_file).read_text(encoding="utf-8").splitlines()
        encoded = [self.encode(p, what=f"prompt on line {i + 1} of {self.cfg.prompts_file}") for i, p in enumerate(lines)]
        records = []
        sink = open(self.cfg.output_file, "w", encoding="utf-8") if self.cfg.output_file else sys.stdout
        try:
            # every prompt num_samples times, in batches of batch_size rows
            rows = [(i, s) for i in range(len(lines)) for s in range(self.cfg.num_samples)]
            for start in range(0, len(rows), self.cfg.batch_size):
                chunk = rows[start: start + self.cfg.batch_size]
                result = self.run([encoded[i] for i, _ in chunk])
                per_row = len(result.sequences) // len(chunk)  # beam search returns num_return_sequences each
                for k, (seq, score) in enumerate(zip(result.sequences, result.scores)):
                    i, s = chunk[k // per_row]
                    rec = {"line": i + 1, "prompt": lines[i], "sample": s * per_row + k % per_row,
                           "text": self.tokenizer.continuation(encoded[i], seq), "tokens": seq, "score": score}
                    sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    records.append(rec)
                sink.flush()
        finally:
            if sink is not sys.stdout:
                sink.close()
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


def generate_cmd(cfg: DictConfig):
    gen = Generator(cfg)
    if cfg.prompts_file is not None:
        return gen.prompts_file()
    if cfg.interactive:
        return gen.interactive()
    return gen.one_prompt(cfg.prompt)
