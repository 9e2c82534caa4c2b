"""Data sources: registered factories that return a ``datasets.DatasetDict`` with the splits
``train``, ``validation`` and ``test`` and one text column.

A data-source plugin is a class constructed from its config fields with a method
``load() -> datasets.DatasetDict`` and an attribute ``text_column``.
"""
from __future__ import annotations

import glob
import os
from importlib import resources
from pathlib import Path

import datasets

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Bad input data: the message says what is wrong and what to do."""


def bundled_corpus(name: str = "tinyshakespeare") -> Path:
    """Path of a corpus shipped inside the package (``lstm_pipeline/data/corpora``)."""
    path = Path(str(resources.files("lstm_pipeline.data") / "corpora" / f"{name}.txt"))
    if not path.is_file():
        raise DataError(f"No bundled corpus '{name}' at {path}.")
    return path


def contiguous_splits(ds: datasets.Dataset, val_fraction: float, test_fraction: float) -> datasets.DatasetDict:
    """Carve validation and test off the end of an ordered dataset, as contiguous blocks
    (train | validation | test), so that a text stream stays a stream. Deterministic."""
    n = len(ds)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) with a sum below 1.")
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    n_train = n - n_val - n_test
    if n_train <= 0 or (val_fraction > 0 and n_val == 0):
        raise DataError(f"The corpus has only {n} rows: too few to split off validation ({val_fraction}) and test ({test_fraction}). Use more data.")
    return datasets.DatasetDict(
        train=ds.select(range(0, n_train)),
        validation=ds.select(range(n_train, n_train + n_val)),
        test=ds.select(range(n_train + n_val, n)),
    )


def _resolve_files(path: str | os.PathLike) -> list[str]:
    path = os.path.expanduser(str(path))
    files = sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
    if not files:
        raise DataError(f"No file matches {path!r}. Check data.path.")
    for f in files:
        if not os.path.isfile(f):
            raise DataError(f"Data file {f!r} does not exist. Check data.path (relative paths are taken from the directory you run in: {os.getcwd()}).")
        if os.path.getsize(f) == 0:
            raise DataError(f"Data file {f!r} is empty. Point data.path at a file with text in it.")
    return files


class TextSource:
    """Plain-text files through the ``datasets`` ``text`` builder, one row per line
    (line breaks kept, so that concatenating the rows gives the file back).
    ``path: null`` is the bundled Tiny Shakespeare corpus."""

    lstm_pipeline_api = "1"
    text_column = "text"

    def __init__(self, path: str | None = None, val_fraction: float = 0.05, test_fraction: float = 0.05,
                 cache_dir: str | None = None):
        self.path = path                  # file or glob; null = bundled Tiny Shakespeare
        self.val_fraction = val_fraction  # last-but-one contiguous block
        self.test_fraction = test_fraction  # last contiguous block
        self.cache_dir = cache_dir        # datasets cache (default: HF_DATASETS_CACHE)

    def load(self) -> datasets.DatasetDict:
        files = _resolve_files(self.path) if self.path else [str(bundled_corpus())]
        ds = datasets.load_dataset("text", data_files=files, split="train", keep_linebreaks=True,
                                   cache_dir=self.cache_dir)
        if len(ds) == 0:
            raise DataError(f"No text in {files}.")
        return contiguous_splits(ds, self.val_fraction, self.test_fraction)
