"""Word-level tokenizer (the PTB / WikiText setups): words split on whitespace (and, with
``split_punctuation``, punctuation); the ``vocab_size`` most frequent words, or those seen at
least ``min_frequency`` times, are kept and every other word is ``<unk>``. Not lossless:
decoding joins words with single spaces.

The decoder writes a space before every word (``decoders.Replace`` of the start of each token),
so the text of the tokens that follow a prompt starts with the space that separates them from it,
however they are decoded: alone (``transformers``' text-generation pipeline decodes only the new
tokens) or in a stream. :meth:`TextTokenizer.decode` drops the one space before the first word."""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from .common import TrainedTokenizer


class WordTokenizer(TrainedTokenizer):
    lossless = False

    def __init__(self, vocab_size: int | None = None, min_frequency: int = 0, unk_token: str = "<unk>",
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), split_punctuation: bool = False,
                 lowercase: bool = False, normalization: str | None = None):
        super().__init__(vocab_size, min_frequency, unk_token, special_tokens, lowercase, normalization)
        self.split_punctuation = split_punctuation  # False: split on whitespace only (pre-tokenised text)

    def train(self, texts: Iterable[str]) -> Tokenizer:
        specials = list(dict.fromkeys(self.all_special_tokens()))
        # room for every special token on top of vocab_size (see _keep_most_frequent)
        budget = self.vocab_size + len(specials) if self.vocab_size else 2**31 - 1
        trainer = trainers.WordLevelTrainer(vocab_size=budget, min_frequency=self.min_frequency,
                                            special_tokens=specials, show_progress=False)
        tok = self._tokenizer(models.WordLevel(unk_token=self.unk_token))
        tok.train_from_iterator(texts, trainer=trainer)
        return self.check_vocab(self._keep_most_frequent(tok, specials))

    def _tokenizer(self, model) -> Tokenizer:
        tok = self.new(model)
        tok.pre_tokenizer = pre_tokenizers.Whitespace() if self.split_punctuation else pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.Replace(Regex("^"), " ")  # " word" for every word (see the module doc)
        return tok

    def _keep_most_frequent(self, tok: Tokenizer, specials: list[str]) -> Tokenizer:
        """The special tokens at ids 0, 1, ..., then the ``vocab_size - len(specials)`` most frequent words.

        The trainer fills its budget with the special tokens and then the words by rank (most frequent
        first, ties by text), numbered in that order. A special token that is also a word of the text
        (PTB and WikiText write ``<unk>``) is taken twice and the two merge, so the trainer's vocabulary
        comes out one token short per such word, and the special token is left with the word's id. The
        budget had room for every special token on top; the words' ids give their rank."""
        vocab = tok.get_vocab(with_added_tokens=False)
        words = sorted((w for w in vocab if w not in specials), key=vocab.__getitem__)
        if self.vocab_size:
            words = words[:max(self.vocab_size - len(specials), 0)]
        out = self._tokenizer(models.WordLevel({w: i for i, w in enumerate([*specials, *words])},
                                               unk_token=self.unk_token))
        out.add_special_tokens(specials)
        return out
