"""Streams decoded text to a file (the terminal) as tokens are produced.

Uses ``tokenizers``' incremental ``DecodeStream``: each token costs O(1), whatever the length,
and a character split over several byte tokens is printed once it is complete."""
from __future__ import annotations

import sys
from typing import TextIO

from tokenizers.decoders import DecodeStream

from ..tokenization.base import TextTokenizer


class TextStreamer:
    """Writes ``prompt``, then each generated token's text as it comes. ``prompt_ids`` (the encoded
    prompt) are fed to the decoder first without being written, so the first new token is decoded
    in context (a word-level decoder then puts the space before it, as
    :meth:`TextTokenizer.continuation` does). Tokens in ``skip_ids`` (the end-of-text token that ends
    a row) are not written."""

    def __init__(self, tokenizer: TextTokenizer, file: TextIO | None = None, prompt: str = "",
                 prompt_ids: list[int] | None = None, skip_ids=()):
        self.tokenizer = tokenizer
        self.skip_ids = frozenset(int(i) for i in skip_ids)
        self.file = file or sys.stdout
        self.stream = DecodeStream(skip_special_tokens=False)
        for token_id in prompt_ids or ():
            self.stream.step(tokenizer.tk, int(token_id))
        # with nothing before it, the first word's space (word level) is not written
        self._strip_space = tokenizer.space_before_words and not prompt_ids
        if prompt:
            self.file.write(prompt)
            self.file.flush()

    def put(self, token_id: int) -> None:
        if int(token_id) in self.skip_ids:
            return
        chunk = self.stream.step(self.tokenizer.tk, int(token_id))
        if chunk and self._strip_space:
            chunk, self._strip_space = chunk[1:] if chunk.startswith(" ") else chunk, False
        if chunk:
            self.file.write(chunk)
            self.file.flush()

    def end(self) -> None:
        self.file.write("\n")
        self.file.flush()
