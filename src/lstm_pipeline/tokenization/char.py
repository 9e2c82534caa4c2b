"""Character-level tokenizer, trained with HF ``tokenizers``.

A BPE model with no merges is exactly a character vocabulary: the trainer collects the
alphabet of the train split; characters never seen map to ``<unk>`` (see
``TextTokenizer.encode_checked`` for the policy at generation time). Lossless on any text whose
characters were all seen in training.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, trainers


class CharTokenizer:
    lstm_pipeline_api = "1"
    lossless = True

    def __init__(self, unk_token: str = "<unk>", special_tokens: Sequence[str] = (),
                 max_alphabet: int | None = None):
        self.unk_token = unk_token              # token for characters unseen in training
        self.special_tokens = list(special_tokens)  # extra tokens, e.g. ["<eos>"]
        self.max_alphabet = max_alphabet        # keep only the most frequent characters

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = Tokenizer(models.BPE(unk_token=self.unk_token))
        tok.decoder = decoders.Fuse()
        kwargs = {"limit_alphabet": self.max_alphabet} if self.max_alphabet else {}
        trainer = trainers.BpeTrainer(
            vocab_size=1,  # no merges: the vocabulary is the alphabet
            special_tokens=[self.unk_token, *self.special_tokens],
            show_progress=False,
            **kwargs,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
