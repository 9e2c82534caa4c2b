"""Unigram language-model tokenizer (SentencePiece's algorithm) over "▁"-marked words. Lossless
on text whose characters were seen in training; others map to ``<unk>``."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, models, trainers

from .bpe import metaspace
from .common import TrainedTokenizer


class UnigramTokenizer(TrainedTokenizer):
    #: tokenizers' Unigram trainer is not reproducible from process to process (its EM keeps hash-map
    #: order), so the run's saved tokenizer.json is what resume, evaluate, generate and DDP ranks use
    deterministic = False
    lossless = True

    def __init__(self, vocab_size: int = 8000, unk_token: str = "<unk>",
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), max_piece_length: int = 16,
                 lowercase: bool = False, normalization: str | None = None):
        super().__init__(vocab_size, 0, unk_token, special_tokens, lowercase, normalization)
        self.max_piece_length = max_piece_length

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = self.new(models.Unigram())
        tok.pre_tokenizer, tok.decoder = metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=self.vocab_size, special_tokens=self.all_special_tokens(),
                                          unk_token=self.unk_token, max_piece_length=self.max_piece_length,
                                          show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return self.check_vocab(tok)
