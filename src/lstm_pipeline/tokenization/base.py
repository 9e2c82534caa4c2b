"""Tokenizers: registered factories that *train* an HF ``tokenizers.Tokenizer`` on the train
split, and the :class:`TextTokenizer` wrapper every stage uses afterwards.

A tokenizer plugin is a class constructed from its config fields with a method
``train(texts: Iterable[str]) -> tokenizers.Tokenizer``. The result is saved as
``tokenizer.json`` (plain JSON: loading it runs no code) and reloaded with
:meth:`TextTokenizer.load` on resume, evaluate and generate.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from tokenizers import Tokenizer


class UnknownTokenError(ValueError):
    pass


#: the decoder of word-level tokenizers (a space before every word), as tokenizer.json writes it
SPACE_BEFORE_WORDS = {"type": "Replace", "pattern": {"Regex": "^"}, "content": " "}


class TextTokenizer:
    """A trained ``tokenizers.Tokenizer`` plus the few facts the pipeline needs."""

    def __init__(self, tokenizer: Tokenizer):
        self.tk = tokenizer
        self.unk_token: str | None = getattr(tokenizer.model, "unk_token", None)
        self.unk_id = tokenizer.token_to_id(self.unk_token) if self.unk_token else None
        # word level: the decoder writes a space before every word (tokenization/word.py)
        self.space_before_words = json.loads(tokenizer.to_str()).get("decoder") == SPACE_BEFORE_WORDS

    # -- io ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"No tokenizer at {path}: expected a tokenizer.json written by a training run.")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self.tk.save(str(path))

    # -- facts --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.tk.token_to_id(token)

    # -- encode / decode ------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets nobody reads here
        encode = getattr(self.tk, "encode_batch_fast", self.tk.encode_batch)
        return [e.ids for e in encode(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        text = self.tk.decode(list(ids), skip_special_tokens=False)
        return text[1:] if self.space_before_words and text.startswith(" ") else text

    def continuation(self, prompt_ids: Sequence[int], ids: Sequence[int]) -> str:
        """The text ``ids`` add after ``prompt_ids``: ``prompt + continuation`` reads as the whole.
        Decoders that join tokens with spaces (word level, WordPiece) put one before the first new
        word, which ``decode(ids)`` alone would leave out ("the" + "cat" must read "the cat")."""
        if not prompt_ids:
            return self.decode(ids)
        head, whole = self.decode(prompt_ids), self.decode(list(prompt_ids) + list(ids))
        return whole[len(head):] if whole.startswith(head) else self.decode(ids)

    def unknown_pieces(self, text: str) -> list[str]:
        """The pieces of ``text`` this tokenizer maps to its unknown token (empty when none)."""
        if self.unk_id is None:
            return []
        enc = self.tk.encode(text, add_special_tokens=False)
        return [text[a:b] for tid, (a, b) in zip(enc.ids, enc.offsets) if tid == self.unk_id]

    def encode_checked(self, text: str, on_unknown: str = "error", what: str = "text") -> list[int]:
        """Encode ``text``; pieces the tokenizer does not know are handled by ``on_unknown``:
        ``error`` (raise, naming them), ``replace`` (map to the unknown token) or ``skip`` (drop them)."""
        if on_unknown not in ("error", "replace", "skip"):
            raise ValueError(f"on_unknown must be one of error, replace, skip; got {on_unknown!r}")
        unknown = self.unknown_pieces(text)
        if unknown and on_unknown == "error":
            shown = ", ".join(sorted({f"{u!r} (U+{ord(u[0]):04X})" for u in unknown}))
            raise UnknownTokenError(
                f"The {what} contains characters the tokenizer never saw in training: {shown}. "
                f"Remove them, or pass on_unknown=replace (map them to {self.unk_token!r}) or on_unknown=skip (drop them)."
            )
        ids = self.encode(text)
        if on_unknown == "skip" and self.unk_id is not None:
            ids = [i for i in ids if i != self.unk_id]
        return ids


def tokenizer_summary(tk: TextTokenizer) -> dict:
    return {"vocab_size": tk.vocab_size, "unk_token": tk.unk_token,
            "model": json.loads(tk.tk.to_str())["model"]["type"]}
