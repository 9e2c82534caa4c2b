"""WordPiece (BERT-style): words split on whitespace and punctuation, continuation pieces marked
``##``. Not lossless: whitespace is not kept (decoding joins words with single spaces)."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .common import TrainedTokenizer


class WordPieceTokenizer(TrainedTokenizer):
    lossless = False

    def __init__(self, vocab_size: int = 8000, min_frequency: int = 2, unk_token: str = "<unk>",
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), lowercase: bool = False,
                 normalization: str | None = None):
        super().__init__(vocab_size, min_frequency, unk_token, special_tokens, lowercase, normalization)

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = self.new(models.WordPiece(unk_token=self.unk_token))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                                            special_tokens=self.all_special_tokens(), show_progress=False,
                                            continuing_subword_prefix="##")
        tok.train_from_iterator(texts, trainer=trainer)
        return self.check_vocab(tok)
