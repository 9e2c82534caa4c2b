"""Character-level tokenizer, an HF ``tokenizers`` BPE model with no merges: exactly a character
vocabulary, the alphabet of the train split. Characters never seen in training follow ``on_unknown``:
``unk`` maps them to ``<unk>`` (see ``TextTokenizer.encode_checked`` for the policy at generation
time), ``drop`` leaves them out of the encoding. Lossless on any text whose characters were all
seen in training.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models

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
        """The alphabet of ``texts`` (after normalisation) as a BPE vocabulary with no merges: the
        special tokens first, then the characters in code-point order (``max_alphabet``: the most
        frequent ones), exactly the vocabulary ``tokenizers``' ``BpeTrainer(vocab_size=1)`` learns. The
        characters are counted as the text (or batches of texts) streams past, so memory is the alphabet's, not the
        corpus's (the trainer keeps every distinct row: 1.9 GB for a 50 MB corpus)."""
        norm = self.normalizer()
        counts: Counter[str] = Counter()
        for item in texts:  # texts, or batches (lists) of texts, as ``train_from_iterator`` takes them
            for text in ([item] if isinstance(item, str) else item):
                counts.update(norm.normalize_str(text) if norm is not None else text)
        chars = sorted(counts, key=lambda c: (-counts[c], c))[:self.max_alphabet or None]
        specials = self.all_special_tokens()
        vocab = dict.fromkeys([*specials, *sorted(chars)])
        tok = self.new(models.BPE({t: i for i, t in enumerate(vocab)}, [], unk_token=self.unk_token))
        tok.decoder = decoders.Fuse()
        if specials:
            tok.add_special_tokens(specials)
        return tok
