"""Streams decoded text to a file (the terminal) as tokens are produced.

Uses ``tokenizers``' incremental ``DecodeStream``: each token costs O(1), whatever the length,
and a character split over several byte tokens is printed once it is complete."""
from __future__ import annotations

import sys
from typing import TextIO

from tokenizers.decoders import DecodeStream

from ..tokenization.base import TextTokenizer


class TextStreamer:
    def __init__(self, tokenizer: TextTokenizer, file: TextIO | None = None, prompt: str = ""):
        self.tokenizer = tokenizer
        self.file = file or sys.stdout
        self.stream = DecodeStream(skip_special_tokens=False)
        if prompt:
            self.file.write(prompt)
            self.file.flush()

    def put(self, token_id: int) -> None:
        chunk = self.stream.step(self.tokenizer.tk, int(token_id))
        if chunk:
            self.file.write(chunk)
            self.file.flush()

    def end(self) -> None:
        self.file.write("\n")
        self.file.flush()
