"""The one generation entry point: prompts (text) in, completions (text) out.

Every caller goes through :class:`TextGenerator`: ``lstm-pipeline generate`` (one prompt, a prompts
file, the interactive loop), :meth:`lstm_pipeline.generation.pretrained.PretrainedLM.generate`, the sample printed at the
end of training, the model card's sample and ``evaluate``'s generation metrics. It owns the sequence
that used to be written once per caller:

1. the decoding: the one given (a registered decoder's name and settings; settings without a
   ``name`` change the model's own default) or the model's ``generation_config.json``;
2. the special tokens the model was trained with: generation stops at its end-of-text token unless
   told otherwise, and an empty prompt starts from the start-of-text state (``bos_token_id``);
3. the prompt, encoded and checked (unknown characters are an error that names them, or replaced or
   skipped: ``on_unknown``);
4. the decoder's ``generate`` (the prompt consumed once, one ``model.step`` per new token);
5. the text that follows the prompt, decoded in context (:meth:`TextTokenizer.continuation`), without
   the end-of-text token that ended it; streamed as it is produced where the decoder streams.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

import torch

from ..artifacts.hub import resolve_pretrained
from ..artifacts.model_dir import DEFAULT_DECODING, load_pretrained
from ..kernels.int8 import QUANTIZE, quantize_model
from ..tokenization.base import TextTokenizer
from .strategies import DecodingStrategy, GenerationResult
from .streamer import TextStreamer

#: values of ``eos_token`` that turn stopping at the model's end-of-text token off
NO_EOS = ("none", "None", False)


def resolve_eos_token_id(tokenizer: TextTokenizer, config: Mapping[str, Any], eos_token: str | None = None) -> int | None:
    """The token that ends a row. ``None``: the model's own end-of-text token (``config["eos_token_id"]``,
    none if it was trained without one); ``"none"``: no token; any other string: that token (it must be
    in the vocabulary, else ValueError)."""
    if eos_token is None:
        eos = config.get("eos_token_id")
        return None if eos is None else int(eos)
    if eos_token in NO_EOS:
        return None
    tid = tokenizer.token_to_id(str(eos_token))
    if tid is None:
        raise ValueError(f"eos_token={eos_token!r} is not in the tokenizer's vocabulary; pick a token it knows "
                         f"(e.g. a special token added at training), leave it unset (the model's own: "
                         f"{config.get('eos_token')!r}) or pass eos_token=none.")
    return tid


def decoding_settings(decoding: str | Mapping[str, Any] | None) -> dict:
    """A ``decoding`` argument as the settings mapping the registry builds from, in the forms the CLI
    takes: a decoder's name (``"greedy"``, as ``decoding=greedy``), a mapping (``{"name": "sample",
    "temperature": 0.7}``; settings without a ``name`` change the model's default), or None (the
    model's default). Raises ValueError, naming these forms, for anything else."""
    if decoding is None:
        return {}
    if isinstance(decoding, str):
        return {"name": decoding}
    if isinstance(decoding, Mapping):
        return dict(decoding)
    raise ValueError(f"decoding={decoding!r} is not a decoding: pass a decoder's name (decoding=\"greedy\"), "
                     f"a mapping of settings (decoding={{\"name\": \"sample\", \"temperature\": 0.7}}), "
                     f"a DecodingStrategy, or None for the model's default.")


def model_default_decoding(model_dir: str | Path | None, given: str | Mapping[str, Any] | None = None) -> dict:
    """The decoding to use: ``given`` if it names a strategy; else the model's own (its
    ``generation_config.json``'s ``decoding``, or :data:`DEFAULT_DECODING`) with ``given``'s settings
    on top (``{"temperature": 0.5}`` cools the model's default)."""
    import json

    given = decoding_settings(given)
    if "name" in given:
        return given
    own = dict(DEFAULT_DECODING)
    path = Path(model_dir) / "generation_config.json" if model_dir is not None else None
    if path is not None and path.is_file():
        own = dict(json.loads(path.read_text()).get("decoding") or own)
    return {**own, **given}


@dataclass
class Completion:
    prompt: str
    text: str                 # what follows the prompt (``prompt + text`` is the whole), end-of-text token left out
    tokens: list[int]         # the generated ids (an end-of-text token that ended the row kept)
    score: float              # the decoder's score (a sum of log-probabilities in nats, or beam search's score)
    finish_reason: str        # "eos" (the end-of-text token), "length" (max_new_tokens) or "stop" (a stop string, max_time)


class TextGenerator:
    """A model, its tokenizer and its exported config (``config.json``), ready to generate text.

    ``config`` gives ``bos_token_id`` (the token whose state starts a text), ``eos_token_id`` (the
    end-of-text token the model was trained with, if any) and ``model_dir`` holds
    ``generation_config.json`` (the default decoding)."""

    def __init__(self, model, tokenizer: TextTokenizer, config: Mapping[str, Any] | None = None,
                 model_dir: str | Path | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.config = dict(config or {})
        self.model_dir = Path(model_dir) if model_dir is not None else None

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu", quantize: str | None = None, **hub_kwargs) -> "TextGenerator":
        """From a run directory, a model directory or a Hub repo id (found in the local cache or
        downloaded; see :func:`lstm_pipeline.artifacts.hub.resolve_pretrained`). ``quantize="int8"``: dynamic int8
        steps on the CPU (:func:`lstm_pipeline.kernels.int8.quantize_model`)."""
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of none, int8; got {quantize!r}")
        model_dir = resolve_pretrained(run, **hub_kwargs)
        model, tokenizer, config = load_pretrained(model_dir, map_location=device)
        return cls(quantize_model(model, quantize), tokenizer, config, model_dir)

    # -- special tokens ------------------------------------------------------------------------
    @property
    def bos_token_id(self) -> int:
        """The token whose state an empty prompt starts from (recorded at export)."""
        return int(self.config.get("bos_token_id") or 0)

    def eos_token_id(self, eos_token: str | None = None) -> int | None:
        """See :func:`resolve_eos_token_id`."""
        return resolve_eos_token_id(self.tokenizer, self.config, eos_token)

    # -- decoding -------------------------------------------------------------------------------
    def default_decoding(self) -> dict:
        """The model's default decoding: its ``generation_config.json``'s ``decoding``."""
        return model_default_decoding(self.model_dir)

    def decoder(self, decoding: str | Mapping[str, Any] | DecodingStrategy | None = None) -> DecodingStrategy:
        """A decoder from a registered name (``"greedy"``) or a mapping of its settings; settings without
        a ``name`` change the model's default decoding (``{"temperature": 0.5}``); ``None`` is the
        default itself; a built decoder is used as it is. Other values: ValueError (see
        :func:`decoding_settings`)."""
        from ..registry import DECODERS

        if isinstance(decoding, DecodingStrategy):
            return decoding
        decoding = decoding_settings(decoding)
        if "name" not in decoding:
            decoding = {**self.default_decoding(), **decoding}
        return DECODERS.build(decoding)

    def encode(self, prompt: str, on_unknown: str = "error", what: str = "prompt") -> list[int]:
        return self.tokenizer.encode_checked(prompt, on_unknown=on_unknown, what=what)

    # -- generation ------------------------------------------------------------------------------
    def run(self, decoder: DecodingStrategy, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int,
            generator: torch.Generator | None = None, eos_token_id: int | None = None,
            stop_strings: Sequence[str] = (), max_time: float | None = None, streamer=None) -> GenerationResult:
        """The decoder over encoded prompts (the ids level under :meth:`generate`)."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        result = decoder.generate(self.model, [list(p) for p in prompt_ids], max_new_tokens=max_new_tokens,
                                  eos_token_id=eos_token_id, bos_token_id=self.bos_token_id, streamer=streamer,
                                  generator=generator, tokenizer=self.tokenizer, stop_strings=list(stop_strings),
                                  max_time=max_time)
        if decoder.scores_are_logprob_sums and not all(math.isfinite(s) for s in result.scores):
            raise ValueError("The model's outputs are not finite (NaN or infinite log-probabilities): its weights are "
                             "damaged (a diverged run?). Generate from an earlier checkpoint, or retrain with a lower "
                             "learning rate.")
        return result

    def generate(self, prompts: str | Sequence[str], *,
                 decoding: str | Mapping[str, Any] | DecodingStrategy | None = None,
                 max_new_tokens: int = 100, seed: int | None = None, generator: torch.Generator | None = None,
                 eos_token: str | None = None, stop_strings: Sequence[str] = (), max_time: float | None = None,
                 on_unknown: str = "error", stream: TextIO | None = None, what: str = "prompt") -> list[Completion]:
        """Complete each prompt (a string or a list). Returns one :class:`Completion` per prompt (beam
        search with ``num_return_sequences=k``: k per prompt, in order).

        ``seed`` seeds a fresh ``torch.Generator`` (the same seed gives the same text); or pass a
        ``generator`` to continue its stream. ``stream``: a text file (the terminal) the first prompt and
        its new text are written to as tokens are produced (decoders that stream, one prompt only).
        ``decoding``: a decoder's name, a mapping of its settings, a built decoder or None (see :meth:`decoder`).
        Raises ValueError for bad settings, unknown characters (``on_unknown="error"``) and a model
        whose outputs are not finite."""
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        decoder = self.decoder(decoding)
        ids = [self.encode(p, on_unknown, what) for p in prompts]
        eos_id = self.eos_token_id(eos_token)
        if generator is None:
            generator = torch.Generator(device=next(self.model.parameters()).device)
            generator.manual_seed(int(seed)) if seed is not None else generator.seed()
        streamer = None
        if stream is not None and len(prompts) == 1 and decoder.streams:
            streamer = TextStreamer(self.tokenizer, stream, prompt=prompts[0], prompt_ids=ids[0],
                                    skip_ids=() if eos_id is None else (eos_id,))
        result = self.run(decoder, ids, max_new_tokens, generator, eos_id, stop_strings, max_time, streamer)
        per_prompt = max(1, len(result.sequences) // max(1, len(prompts)))
        out = []
        for k, (seq, score) in enumerate(zip(result.sequences, result.scores)):
            i = k // per_prompt
            ended = eos_id is not None and len(seq) > 0 and seq[-1] == eos_id
            text_ids = seq[:-1] if ended else seq
            reason = "eos" if ended else ("length" if len(seq) >= max_new_tokens else "stop")
            out.append(Completion(prompts[i], self.tokenizer.continuation(ids[i], text_ids), list(seq),
                                  float(score), reason))
        if stream is not None and streamer is None:  # a decoder that cannot stream: the whole text at the end
            for c in out:
                stream.write(c.prompt + c.text + "\n")
            stream.flush()
        return out
