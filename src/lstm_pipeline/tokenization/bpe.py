"""Character BPE (SentencePiece-style): spaces become the visible marker "▁" that starts a word,
merges are learned over characters. Lossless on text whose characters were seen in training;
others map to ``<unk>``."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .common import TrainedTokenizer


def metaspace():
    return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"), decoders.Metaspace(
        replacement="▁", prepend_scheme="never")


class BPETokenizer(TrainedTokenizer):
    lossless = True

    def __init__(self, vocab_size: int = 8000, min_frequency: int = 2, unk_token: str = "<unk>",
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), lowercase: bool = False,
                 normalization: str | None = None):
        super().__init__(vocab_size, min_frequency, unk_token, special_tokens, lowercase, normalization)

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = self.new(models.BPE(unk_token=self.unk_token))
        tok.pre_tokenizer, tok.decoder = metaspace()
        trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                      special_tokens=self.all_special_tokens(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return self.check_vocab(tok)
