"""Character-level tokenizer, trained with HF ``tokenizers``.

A BPE model with no merges is exactly a character vocabulary: the trainer collects the
alphabet of the train split. Characters never seen in training follow ``on_unknown``:
``unk`` maps them to ``<unk>`` (see ``TextTokenizer.encode_checked`` for the policy at generation
time), ``drop`` leaves them out of the encoding. Lossless on any text whose characters were all
seen in training.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, trainers

from .common import TokenizerConfigError, TrainedTokenizer


class CharTokenizer(TrainedTokenizer):
    lossless = True

    def __init__(self, unk_token: str = "<unk>", special_tokens: Sequence[str] = (),
                 max_alphabet: int | None = None, on_unknown: str = "unk", lowercase: bool = False,
                 normalization: str | None = None):
        if on_unknown not in ("unk", "drop"):
            raise TokenizerConfigError(f"tokenizer.on_unknown={on_unknown!r}: use unk (map to {unk_token!r}) or drop.")
        super().__init__(None, 0, unk_token if on_unknown == "unk" else None, special_tokens, lowercase, normalization)
        self.on_unknown = on_unknown            # unseen characters: unk or drop
        self.max_alphabet = max_alphabet        # keep only the most frequent characters

    def train(self, texts: Iterable[str]) -> Tokenizer:
        tok = self.new(models.BPE(unk_token=self.unk_token))
        tok.decoder = decoders.Fuse()
        kwargs = {"limit_alphabet": self.max_alphabet} if self.max_alphabet else {}
        trainer = trainers.BpeTrainer(
            vocab_size=1,  # no merges: the vocabulary is the alphabet
            special_tokens=self.all_special_tokens(),
            show_progress=False,
            **kwargs,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
