"""Source -> tokenizer -> encoded splits. The result, a :class:`Corpus`, feeds the datamodule,
evaluation and the benchmarks alike."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import datasets
import numpy as np

from ..registry import DATA_SOURCES, TOKENIZERS
from ..tokenization.base import TextTokenizer
from .sources import SPLITS, DataError

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    tokenizer: TextTokenizer
    ids: dict[str, np.ndarray]               # split -> 1-D token ids
    num_chars: dict[str, int] = field(default_factory=dict)  # split -> characters (for bpc)

    def chars_per_token(self, split: str) -> float:
        return self.num_chars[split] / max(1, len(self.ids[split]))


def load_source(data_cfg: Mapping[str, Any]) -> tuple[datasets.DatasetDict, str]:
    source = DATA_SOURCES.build(data_cfg)
    dd = source.load()
    column = getattr(source, "text_column", "text")
    for split in SPLITS:
        if split not in dd:
            raise DataError(f"The data source gave no '{split}' split; it has: {', '.join(dd)}.")
        if column not in dd[split].column_names:
            raise DataError(
                f"The {split} split has no column '{column}'. Its columns are: {', '.join(dd[split].column_names)}. "
                f"Set data.text_column to one of them."
            )
    return dd, column


def build_tokenizer(tokenizer_cfg: Mapping[str, Any], train: datasets.Dataset, column: str) -> TextTokenizer:
    factory = TOKENIZERS.build(tokenizer_cfg)

    def batches():
        for i in range(0, len(train), 1000):
            yield from train[i : i + 1000][column]

    tk = TextTokenizer(factory.train(batches()))
    if tk.vocab_size <= 1:
        raise DataError("The tokenizer learned an empty vocabulary: the train split has no text.")
    return tk


def encode_split(ds: datasets.Dataset, column: str, tk: TextTokenizer, num_proc: int | None = None) -> np.ndarray:
    """Encode a split with ``datasets.map`` (batched, cached by fingerprint) into one id array."""
    encoded = ds.map(
        lambda batch: {"ids": tk.encode_batch(batch[column])},
        batched=True,
        remove_columns=ds.column_names,
        num_proc=num_proc,
        desc="encoding",
    )
    col = encoded.data.column("ids").combine_chunks()
    dtype = np.uint16 if tk.vocab_size <= np.iinfo(np.uint16).max else np.int32
    return col.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def prepare_corpus(data_cfg: Mapping[str, Any], tokenizer_cfg: Mapping[str, Any],
                   tokenizer_path: str | Path | None = None) -> Corpus:
    """Load the data, train the tokenizer on the train split (or reuse ``tokenizer_path`` where it
    exists: resume, evaluate) and encode every split."""
    dd, column = load_source(data_cfg)
    if tokenizer_path is not None and Path(tokenizer_path).is_file():
        tk = TextTokenizer.load(tokenizer_path)
        log.info("reusing tokenizer %s", tokenizer_path)
    else:
        tk = build_tokenizer(tokenizer_cfg, dd["train"], column)
    ids, chars = {}, {}
    for split in SPLITS:
        ids[split] = encode_split(dd[split], column, tk)
        chars[split] = sum(len(t) for t in dd[split][column])
    if len(ids["train"]) == 0:
        raise DataError("The train split encodes to no tokens. Check the data source and its text column.")
    return Corpus(tk, ids, chars)
