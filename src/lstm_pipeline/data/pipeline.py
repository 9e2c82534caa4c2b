"""Source -> tokenizer -> encoded splits. The result, a :class:`Corpus`, feeds the datamodule,
evaluation and the benchmarks alike.

Caching (both keyed by content fingerprints, under ``<datasets cache>/lstm_pipeline/``):

* the trained tokenizer: key = the train split's ``datasets`` fingerprint + :func:`content_key`
  (the files' size and content hash) + the tokenizer config;
* every encoded split: key = the split's fingerprint + :func:`content_key` + the tokenizer's JSON +
  the encoding options.
  Encoding runs with ``datasets.map`` (batched, ``num_proc`` workers), then the ids are written once
  to a flat ``.bin`` file (uint16 where the vocabulary fits, else int32; the map's arrow output is
  deleted then, not kept as a second copy) that every later run memory-maps (``np.memmap``):
  a second run with the same data and tokenizer does no tokenisation work and copies nothing
  into RAM.

With a streaming source (``data.streaming=true``) nothing is encoded up front: the
:class:`Corpus` carries the raw ``IterableDataset`` splits and batching tokenises on the fly.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import datasets
import numpy as np

from ..atomic import atomic_path, write_text
from ..registry import DATA_SOURCES, TOKENIZERS
from ..tokenization.base import TextTokenizer
from .fingerprint import files_digest
from .sources import SPLITS, DataError, check_column

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    tokenizer: TextTokenizer
    ids: dict[str, np.ndarray]               # split -> 1-D token ids (np.memmap, uint16 or int32)
    num_chars: dict[str, int] = field(default_factory=dict)  # split -> characters (for bpc)
    doc_offsets: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (n_docs + 1,) row starts in ids
    streams: dict[str, Any] = field(default_factory=dict)    # streaming: split -> raw IterableDataset
    text_column: str = "text"
    eos_token: str | None = None
    document_separator: str | None = None

    def chars_per_token(self, split: str) -> float:
        return self.num_chars[split] / max(1, len(self.ids[split]))

    @property
    def streaming(self) -> bool:
        return bool(self.streams)


def cache_root(source=None) -> Path:
    base = getattr(source, "cache_dir", None) or datasets.config.HF_DATASETS_CACHE
    return Path(os.path.expanduser(str(base))) / "lstm_pipeline"


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode() if not isinstance(p, (bytes, str)) else
                 (p.encode() if isinstance(p, str) else p))
        h.update(b"\0")
    return h.hexdigest()[:24]


def content_key(ds, source=None) -> list:
    """What a split's cache entries are keyed on besides its ``datasets`` fingerprint (which is path
    and mtime for local files): the content digest of the source's files (size + streaming hash,
    :mod:`.fingerprint`) and the arrow files the split is read from (whose directory is itself
    per content, see ``sources.content_cache_dir``). A file changed under the same mtime changes both."""
    files = getattr(source, "_files", None) if source is not None else None
    digest = files_digest(files) if files else None
    arrow = sorted(str(f.get("filename", "")) for f in (getattr(ds, "cache_files", None) or []))
    return [digest, arrow]


def describe_source(source) -> str:
    """What a source reads, for messages: its files or path (``describe()``), else its data.name."""
    describe = getattr(source, "describe", None)
    try:
        where = describe() if callable(describe) else None
    except Exception:  # a plugin's describe that fails: the name is enough
        where = None
    return where or f"data source {type(getattr(source, 'source', source)).__name__}"


def load_source(data_cfg: Mapping[str, Any]):
    """Build the source and load its splits; returns (splits, source)."""
    source = DATA_SOURCES.build(data_cfg)
    dd = source.load()
    column = getattr(source, "text_column", "text")
    for split in SPLITS:
        if split not in dd:
            raise DataError(f"data.name={data_cfg.get('name')!r} ({describe_source(source)}) gave no '{split}' split; "
                            f"it has: {', '.join(dd)}. Its load() must return train, validation and test.")
    check_column(dd, column, describe_source(source))
    return dd, source


def _texts(ds, column: str, separator: str | None, counter: list | None = None):
    """The column's texts (None read as ""), in batches for a Dataset, row by row for a stream."""
    sep = separator or ""
    if isinstance(ds, datasets.IterableDataset):
        for row in ds:
            t = row[column] or ""
            if counter is not None:
                counter[0] += len(t)  # the text itself: a separator alone is no text
            yield t + sep
        return
    for i in range(0, len(ds), 1000):
        texts = [t or "" for t in ds[i: i + 1000][column]]
        if counter is not None:
            counter[0] += sum(map(len, texts))  # the text itself: a separator alone is no text
        yield [t + sep for t in texts]


def _with_eos(tk: TextTokenizer, eos_token: str | None) -> TextTokenizer:
    if eos_token and tk.token_to_id(eos_token) is None:
        tk.tk.add_special_tokens([eos_token])
    return tk


def build_tokenizer(tokenizer_cfg: Mapping[str, Any], train, column: str, source=None) -> TextTokenizer:
    """Train the configured tokenizer on the train split only (cached by the split's fingerprint
    and the config), or load it where it needs no training (byte, pretrained)."""
    factory = TOKENIZERS.build(tokenizer_cfg)
    eos = getattr(source, "eos_token", None)
    sep = getattr(source, "document_separator", None)
    if not getattr(factory, "needs_training", True):
        return _with_eos(TextTokenizer(factory.train(None)), eos)
    fp = getattr(train, "_fingerprint", None)
    path = None
    if fp and not isinstance(train, datasets.IterableDataset) and train.cache_files:
        key = _digest("tokenizer", fp, content_key(train, source), dict(tokenizer_cfg), column, sep, eos)
        path = cache_root(source) / "tokenizers" / f"{key}.json"
        if path.is_file():
            try:
                tk = TextTokenizer.load(path)
                log.info("reusing cached tokenizer %s", path)
                return tk
            except Exception as exc:  # a damaged cache entry: trained again below, and rewritten
                log.warning("the cached tokenizer %s is damaged (%s): training it again", path,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                path.unlink(missing_ok=True)
    counter = [0]
    rows = _texts(train, column, sep, counter)  # batches of texts: train_from_iterator takes them as they are
    try:
        tk = TextTokenizer(factory.train(rows))
    except ValueError:
        if counter[0] > 0:
            raise
        tk = None  # no text at all: say so below rather than "vocabulary too large"
    where = describe_source(source) if source is not None else "the data"
    if counter[0] == 0:
        raise DataError(f"The train split's column '{column}' ({where}) is empty (no text in any row) or every row was "
                        f"filtered out; its columns are: {', '.join(train.column_names or [column])}. "
                        f"Set data.text_column to the column with the text, or relax data.min_length.")
    if tk.vocab_size <= 1:
        raise DataError(f"tokenizer={tokenizer_cfg.get('name')} learned an empty vocabulary: the train split ({where}) "
                        f"has no text. Check data.path and data.text_column.")
    tk = _with_eos(tk, eos)
    if path is not None:
        with atomic_path(path) as tmp:
            tk.save(tmp)
    return tk


def id_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _memmap(path: Path, dtype, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


def _read_cache_entry(meta_path: Path, bin_path: Path, doc_path: Path, dtype):
    """A cached encoded split (ids, document offsets, characters), or None (with a warning naming the
    file) when the entry is damaged: an unreadable index, a .bin file of the wrong size, unreadable offsets.
    The caller then encodes the split again and rewrites the entry."""
    try:
        meta = json.loads(meta_path.read_text())
        n, chars = int(meta["tokens"]), int(meta["chars"])
        if meta.get("dtype", np.dtype(dtype).name) != np.dtype(dtype).name:
            raise ValueError(f"dtype {meta.get('dtype')}, expected {np.dtype(dtype).name}")
        size = bin_path.stat().st_size if n else 0
        if size != n * np.dtype(dtype).itemsize:
            raise ValueError(f"{bin_path.name} has {size} bytes, the index says {n} tokens")
        docs = np.load(doc_path, mmap_mode="r")
        if docs.ndim != 1 or len(docs) < 1 or int(docs[-1]) != n:
            raise ValueError(f"{doc_path.name} does not end at {n} tokens")
        return _memmap(bin_path, dtype, n), docs, chars
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        log.warning("the encoded-data cache entry %s is damaged (%s): encoding the split again", meta_path, exc)
        for path in (meta_path, bin_path, doc_path):
            path.unlink(missing_ok=True)
        return None


def encode_split(ds: datasets.Dataset, column: str, tk: TextTokenizer, num_proc: int | None = None,
                 separator: str | None = None, eos_token: str | None = None, cache_dir: Path | None = None,
                 source=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Encode a split with ``datasets.map`` (batched, cached by fingerprint and :func:`content_key`)
    into one memory-mapped id array. Returns (ids, document offsets (n_rows + 1,), number of characters)."""
    dtype = id_dtype(tk.vocab_size)
    if len(ds) == 0:  # e.g. val_fraction: 0
        return np.zeros(0, dtype=dtype), np.zeros(1, dtype=np.int64), 0
    eos_id = tk.token_to_id(eos_token) if eos_token else None
    key = _digest("encoded", ds._fingerprint, content_key(ds, source), tk.tk.to_str(), column, separator, eos_token, np.dtype(dtype).str)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    out = root / "encoded"
    meta_path, bin_path, doc_path = out / f"{key}.json", out / f"{key}.bin", out / f"{key}.docs.npy"
    cacheable = bool(ds.cache_files)  # an in-memory dataset has no stable fingerprint to cache on
    if cacheable and meta_path.is_file():
        cached = _read_cache_entry(meta_path, bin_path, doc_path, dtype)
        if cached is not None:
            return cached
    encoded = _map_encode(ds, column, tk, separator or "", eos_id, dtype, key, num_proc)
    table = encoded.data.table if hasattr(encoded.data, "table") else encoded.data
    chars = int(np.asarray(table.column("n_chars").to_numpy()).sum()) if len(encoded) else 0
    lengths = np.concatenate([np.asarray(c.value_lengths(), dtype=np.int64) for c in table.column("ids").chunks]
                             or [np.zeros(0, dtype=np.int64)])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n = int(offsets[-1])
    # the ids, one arrow chunk at a time: no full copy in RAM on the way to the .bin file
    chunks = (np.ascontiguousarray(c.flatten().to_numpy(zero_copy_only=False), dtype=dtype)
              for c in table.column("ids").chunks)
    if not cacheable:
        return (np.concatenate(list(chunks)) if n else np.zeros(0, dtype=dtype)), offsets, chars
    _write_cache_entry(meta_path, bin_path, doc_path, chunks, offsets,
                       {"tokens": n, "chars": chars, "rows": len(lengths), "dtype": np.dtype(dtype).name,
                        "vocab_size": tk.vocab_size})
    # the .bin file is the cache from now on: drop datasets' arrow copy of the same ids
    del table
    for f in encoded.cache_files:
        Path(f["filename"]).unlink(missing_ok=True)
    return _memmap(bin_path, dtype, n), np.load(doc_path, mmap_mode="r"), chars


def _map_encode(ds: datasets.Dataset, column: str, tk: TextTokenizer, sep: str, eos_id: int | None, dtype,
                key: str, num_proc: int | None) -> datasets.Dataset:
    """``ds`` mapped (batched, fingerprinted ``key``) to columns ``ids`` (each text + ``sep``
    encoded, then ``eos_id`` when given) and ``n_chars`` (the characters encoded)."""

    def encode(batch):
        texts = [(t or "") + sep for t in batch[column]]
        ids = tk.encode_batch(texts)
        if eos_id is not None:
            ids = [row + [eos_id] for row in ids]
        return {"ids": ids, "n_chars": [len(t) for t in texts]}

    features = datasets.Features({"ids": datasets.Sequence(datasets.Value(np.dtype(dtype).name)),
                                  "n_chars": datasets.Value("int64")})
    return ds.map(encode, batched=True, remove_columns=ds.column_names, num_proc=num_proc,
                  features=features, new_fingerprint=key, desc="encoding")


def _write_cache_entry(meta_path: Path, bin_path: Path, doc_path: Path, chunks, offsets: np.ndarray,
                       meta: dict) -> None:
    """Write an encoded-data cache entry: the id ``chunks`` (arrays) to ``bin_path``, the document
    ``offsets`` to ``doc_path``, then the index ``meta`` to ``meta_path``, each atomically."""
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = f".tmp{os.getpid()}"
    with open(str(bin_path) + tmp, "wb") as f:
        for v in chunks:
            f.write(v.tobytes())
    os.replace(str(bin_path) + tmp, bin_path)
    with open(str(doc_path) + tmp, "wb") as f:
        np.save(f, offsets)
    os.replace(str(doc_path) + tmp, doc_path)
    # the index last and atomically: a reader sees no entry or a complete one, never half a file
    write_text(meta_path, json.dumps(meta))


def prepare_corpus(data_cfg: Mapping[str, Any], tokenizer_cfg: Mapping[str, Any],
                   tokenizer_path: str | Path | None = None, num_proc: int | None = None) -> Corpus:
    """Load the data, train the tokenizer on the train split (or reuse ``tokenizer_path`` where it
    exists: resume, evaluate) and encode every split (or, streaming, leave that to batching)."""
    dd, source = load_source(data_cfg)
    column = getattr(source, "text_column", "text")
    eos = getattr(source, "eos_token", None)
    sep = getattr(source, "document_separator", None)
    num_proc = num_proc or getattr(source, "num_proc", None)
    if tokenizer_path is not None and Path(tokenizer_path).is_file():
        tk = _with_eos(TextTokenizer.load(tokenizer_path), eos)
        log.info("reusing tokenizer %s", tokenizer_path)
    else:
        tk = build_tokenizer(tokenizer_cfg, dd["train"], column, source)
    common = dict(text_column=column, eos_token=eos, document_separator=sep)
    if isinstance(dd, datasets.IterableDatasetDict):
        return Corpus(tk, {}, {}, streams={s: dd[s] for s in SPLITS}, **common)
    ids, chars, docs = {}, {}, {}
    for split in SPLITS:
        ids[split], docs[split], chars[split] = encode_split(dd[split], column, tk, num_proc, sep, eos,
                                                             cache_root(source), source)
    if len(ids["train"]) == 0:
        raise DataError(f"The train split ({describe_source(source)}) encodes to no tokens: its column '{column}' is "
                        f"empty or every row was filtered out. Check data.path, data.text_column and data.min_length.")
    return Corpus(tk, ids, chars, docs, **common)
