"""Shared pieces of the built-in tokenizers: normalisation options, special tokens, the
vocabulary-size check and GPT-2's byte <-> printable-character table."""
from __future__ import annotations

import json

from functools import lru_cache
from typing import Sequence

from tokenizers import Tokenizer, normalizers

NORMALIZATIONS = ("NFC", "NFD", "NFKC", "NFKD")


class TokenizerConfigError(ValueError):
    pass


class VocabularyTooLargeError(ValueError):
    """The train split cannot fill the requested vocabulary."""


class TrainedTokenizer:
    """Base of the built-in tokenizer factories (a plugin need not use it)."""

    lstm_pipeline_api = "1"
    #: decode(encode(x)) == x for any text built from characters seen in training
    lossless = True
    #: False for tokenizers that are loaded rather than trained (the pipeline then skips reading the data)
    needs_training = True

    def __init__(self, vocab_size: int | None = None, min_frequency: int = 0, unk_token: str | None = "<unk>",
                 special_tokens: Sequence[str] = ("<eos>", "<pad>"), lowercase: bool = False,
                 normalization: str | None = None):
        self.vocab_size = vocab_size            # target vocabulary (special tokens included)
        self.min_frequency = min_frequency      # pieces seen fewer times are not added
        self.unk_token = unk_token              # token for pieces never seen in training (None: none)
        self.special_tokens = [t for t in special_tokens if t != unk_token]
        self.lowercase = lowercase              # normalise: lower-case everything
        if normalization is not None and normalization not in NORMALIZATIONS:
            raise TokenizerConfigError(f"tokenizer.normalization={normalization!r}: use one of {', '.join(NORMALIZATIONS)} or null.")
        self.normalization = normalization      # normalise: a Unicode form (NFC, NFKC, ...)
        if lowercase or normalization:
            self.lossless = False               # normalised text does not round-trip

    def all_special_tokens(self) -> list[str]:
        return ([self.unk_token] if self.unk_token else []) + list(self.special_tokens)

    def normalizer(self):
        parts = []
        if self.normalization:
            parts.append(getattr(normalizers, self.normalization)())
        if self.lowercase:
            parts.append(normalizers.Lowercase())
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else normalizers.Sequence(parts)

    def new(self, model) -> Tokenizer:
        tok = Tokenizer(model)
        norm = self.normalizer()
        if norm is not None:
            tok.normalizer = norm
        return tok

    def check_vocab(self, tok: Tokenizer) -> Tokenizer:
        got = tok.get_vocab_size(with_added_tokens=True)
        if self.vocab_size and got < self.vocab_size:
            raise VocabularyTooLargeError(
                f"tokenizer.vocab_size={self.vocab_size} is larger than the train split allows: training found only "
                f"{got} tokens ({type(self).__name__}, min_frequency={self.min_frequency}). "
                f"Set tokenizer.vocab_size to {got} or less, or train on more text.")
        return canonical_ids(tok)


def canonical_ids(tok: Tokenizer) -> Tokenizer:
    """Give a trained vocabulary deterministic ids.

    The WordPiece, Unigram and WordLevel trainers of ``tokenizers`` learn the same tokens on every run
    but number them in hash-map order, which changes from process to process: two DDP ranks, or a
    rerun, would disagree about what id 42 means. Special tokens keep their ids; the other tokens are
    renumbered in a fixed order (Unigram: by score, then text; the others: by text). BPE ids are
    already deterministic and are left alone."""
    j = json.loads(tok.to_str())
    model = j["model"]
    special = {a["content"] for a in j.get("added_tokens", [])}
    if model["type"] in ("WordPiece", "WordLevel"):
        vocab: dict[str, int] = model["vocab"]
        fixed = {t: i for t, i in vocab.items() if t in special}
        free = iter(sorted(set(range(len(vocab))) - set(fixed.values())))
        rest = sorted(t for t in vocab if t not in special)
        model["vocab"] = {**fixed, **{t: next(free) for t in rest}}
    elif model["type"] == "Unigram":
        rows = model["vocab"]  # [[piece, score], ...]; the id is the position
        fixed = {i: r for i, r in enumerate(rows) if r[0] in special}
        rest = iter(sorted((r for r in rows if r[0] not in special), key=lambda r: (-r[1], r[0])))
        new_rows = [fixed[i] if i in fixed else next(rest) for i in range(len(rows))]
        if model.get("unk_id") is not None:
            unk = rows[model["unk_id"]][0]
            model["unk_id"] = next(i for i, r in enumerate(new_rows) if r[0] == unk)
        model["vocab"] = new_rows
    else:
        return tok
    return Tokenizer.from_str(json.dumps(j))


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the one ``tokenizers``' ByteLevel
    pre-tokenizer uses): printable Latin-1 bytes stand for themselves, the other 68 bytes are
    shifted to U+0100 and up, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
