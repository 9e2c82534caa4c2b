"""Word-level tokenizer (the PTB / WikiText setups): words split on whitespace (and, with
``split_punctuation``, punctuation); the ``vocab_size`` most frequent words, or those seen at
least ``min_frequency`` times, are kept and every other word is ``<unk>``. Not lossless:
decoding joins words with single spaces."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from .common import TrainedTokenizer


class WordTokenizer(TrainedTokenizer):
    lossless = False

    def __init__(self, vocab_size: int | None = None, min_frequency: int = 0, unk_token: str = "<unk>",
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), split_punctuation: bool = False,
                 lowercase: bool = False, normalization: str | None = None):
        super().__init__(vocab_size, min_frequency, unk_token, special_tokens, lowercase, normalization)
        self.split_punctuation = split_punctuation  # False: split on whitespace only (pre-tokenised text)

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = self.new(models.WordLevel(unk_token=self.unk_token))
        tok.pre_tokenizer = pre_tokenizers.Whitespace() if self.split_punctuation else pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(vocab_size=self.vocab_size or 2**31 - 1, min_frequency=self.min_frequency,
                                            special_tokens=self.all_special_tokens(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return self.check_vocab(tok)
