"""Byte-level tokenizer: the 256 byte values of the UTF-8 encoding are the vocabulary (ids 0-255
are the byte values), so no text is ever unknown and every text round-trips. Special tokens
follow at 256, 257, ... Nothing is learned from the data (enwik8-style byte models)."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .common import TrainedTokenizer, byte_to_unicode


class ByteTokenizer(TrainedTokenizer):
    lossless = True
    needs_training = False

    def __init__(self, special_tokens: Sequence[str] = ("<eos>", "<pad>")):
        super().__init__(None, 0, None, special_tokens)

    def train(self, texts: Iterable[str] | None = None) -> Tokenizer:
        table = byte_to_unicode()
        vocab = {table[b]: b for b in range(256)}  # id == byte value
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        if self.special_tokens:
            tok.add_special_tokens(list(self.special_tokens))
        return tok
