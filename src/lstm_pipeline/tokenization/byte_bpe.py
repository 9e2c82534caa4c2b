"""GPT-2 style byte-level BPE: text is split GPT-2's way, mapped to bytes (shown as printable
characters), and BPE merges are learned over bytes. Every byte is in the initial alphabet, so
no text is ever unknown and every text round-trips."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .common import TrainedTokenizer


class ByteBPETokenizer(TrainedTokenizer):
    lossless = True

    def __init__(self, vocab_size: int = 8000, min_frequency: int = 2,
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), lowercase: bool = False,
                 normalization: str | None = None):
        super().__init__(vocab_size, min_frequency, None, special_tokens, lowercase, normalization)

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = self.new(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                      special_tokens=self.all_special_tokens(), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        return self.check_vocab(tok)
