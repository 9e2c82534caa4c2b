"""Data sources: registered factories that return a ``datasets.DatasetDict`` (or, with
``streaming=True``, an ``IterableDatasetDict``) with the splits ``train``, ``validation`` and
``test`` and one text column.

A data-source plugin is a class constructed from its config fields with a method
``load() -> datasets.DatasetDict`` and attributes ``text_column`` (the column holding the text),
and optionally ``eos_token`` (appended after every row/document when encoding),
``document_separator`` (text appended to every row before tokenisation) and ``streaming``.

Built-ins: ``text`` (plain-text files, the bundled corpus), ``files`` (text/jsonl/parquet/csv
files or globs), ``hub`` (``datasets.load_dataset``: a Hub name, a local dataset directory or a
loading script) and ``disk`` (``datasets.load_from_disk``).
"""
from __future__ import annotations

import codecs
import glob
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import datasets

from .fingerprint import files_digest

SPLITS = ("train", "validation", "test")

#: names datasets use for our three splits (the first present wins)
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev", "development"),
    "test": ("test", "testing", "eval"),
}

#: file extension -> datasets packaged builder
FORMATS = {".txt": "text", ".text": "text", ".raw": "text", ".tokens": "text", ".jsonl": "json",
           ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}

ENCODING_ERRORS = ("strict", "replace", "ignore")

#: how text files are decoded: UTF-8, a leading byte-order mark dropped (Notepad writes one), so that
#: it never becomes a token of the vocabulary
TEXT_ENCODING = "utf-8-sig"


class DataError(ValueError):
    """Bad input data: the message says what is wrong and what to do."""


def bundled_corpus(name: str = "tinyshakespeare") -> Path:
    """Path of a corpus shipped inside the package (``lstm_pipeline/data/corpora``)."""
    path = Path(str(resources.files("lstm_pipeline.data") / "corpora" / f"{name}.txt"))
    if not path.is_file():
        raise DataError(f"No bundled corpus '{name}' at {path}.")
    return path


# -- splits -------------------------------------------------------------------------------
def contiguous_splits(ds: datasets.Dataset, val_fraction: float, test_fraction: float,
                      val_count: int | None = None, test_count: int | None = None,
                      where: str | None = None) -> datasets.DatasetDict:
    """Carve validation and test off the end of an ordered dataset, as contiguous blocks
    (train | validation | test), so that a text stream stays a stream. Deterministic.
    ``val_count``/``test_count`` (rows) take precedence over the fractions. ``where`` (the files)
    is named in the error raised when there are too few rows."""
    n = len(ds)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"data.val_fraction ({val_fraction}) and data.test_fraction ({test_fraction}) must be in [0, 1) "
                        f"with a sum below 1.")
    n_test = int(test_count) if test_count is not None else int(round(n * test_fraction))
    n_val = int(val_count) if val_count is not None else int(round(n * val_fraction))
    n_train = n - n_val - n_test
    if n_train <= 0 or (val_fraction > 0 and val_count is None and n_val == 0):
        at = f" ({where})" if where else ""
        raise DataError(f"The corpus{at} has only {n} rows: too few to split off validation "
                        f"(data.val_{'count' if val_count else 'fraction'}={val_count or val_fraction}) and test "
                        f"(data.test_{'count' if test_count else 'fraction'}={test_count or test_fraction}). "
                        f"Use more data or smaller fractions.")
    def block(a: int, b: int) -> datasets.Dataset:
        return ds.select(range(a, b)) if b > a else ds.select([])

    return datasets.DatasetDict(train=block(0, n_train), validation=block(n_train, n_train + n_val),
                                test=block(n_train + n_val, n))


def shuffled_splits(ds: datasets.Dataset, val_fraction: float, test_fraction: float, seed: int,
                    val_count: int | None = None, test_count: int | None = None,
                    where: str | None = None) -> datasets.DatasetDict:
    """Like :func:`contiguous_splits` but rows are assigned at random (seeded): for datasets whose
    rows are independent documents."""
    perm = ds.shuffle(seed=seed).flatten_indices()
    return contiguous_splits(perm, val_fraction, test_fraction, val_count, test_count, where)


def standard_splits(dd: Any, *, split_names: Mapping[str, str] | None = None, val_fraction: float = 0.05,
                    test_fraction: float = 0.05, val_count: int | None = None, test_count: int | None = None,
                    shuffle: bool = False, seed: int = 0, where: str | None = None) -> Any:
    """Map a dataset's own splits onto train/validation/test (``valid``, ``dev``, ... are
    recognised; ``split_names`` maps them explicitly); carve the missing ones off train."""
    streaming = isinstance(dd, (datasets.IterableDataset, datasets.IterableDatasetDict))
    if isinstance(dd, (datasets.Dataset, datasets.IterableDataset)):
        dd = (datasets.IterableDatasetDict if streaming else datasets.DatasetDict)(train=dd)
    have = list(dd)
    out = {}
    for ours in SPLITS:
        if split_names and ours in split_names:
            theirs = split_names[ours]
            if theirs not in dd:
                at = f" ({where})" if where else ""
                raise DataError(f"data.split_names.{ours}={theirs!r}: the dataset{at} has no split {theirs!r}. "
                                f"Its splits are: {', '.join(have)}.")
            out[ours] = dd[theirs]
            continue
        for alias in SPLIT_ALIASES[ours]:
            if alias in dd:
                out[ours] = dd[alias]
                break
    if "train" not in out:
        if len(have) == 1:
            out["train"] = dd[have[0]]
        else:
            at = f" ({where})" if where else ""
            raise DataError(f"The dataset{at} has no train split. Its splits are: {', '.join(have)}. "
                            f"Name the one to train on with data.split_names.train=<split>.")
    if "validation" in out and "test" in out:
        cls = datasets.IterableDatasetDict if streaming else datasets.DatasetDict
        return cls(train=out["train"], validation=out["validation"], test=out["test"])
    # carve what is missing off train
    need_v, need_t = "validation" not in out, "test" not in out
    if streaming:  # a stream has no length: carve row counts off its start
        vc, tc = (val_count if need_v else 0), (test_count if need_t else 0)
        if (need_v and not vc) or (need_t and not tc):
            raise DataError("A streaming dataset without validation/test splits needs data.val_count and "
                            "data.test_count (rows to carve off the start of the stream): fractions need a length.")
        train = out["train"]
        carved = {"validation": train.take(vc), "test": train.skip(vc).take(tc), "train": train.skip(vc + tc)}
    else:
        carve = shuffled_splits if shuffle else contiguous_splits
        carved = carve(out["train"], val_fraction if need_v else 0.0, test_fraction if need_t else 0.0,
                       val_count=val_count if need_v else 0, test_count=test_count if need_t else 0,
                       where=where, **({"seed": seed} if shuffle else {}))
    for split in SPLITS:
        out.setdefault(split, carved[split])
    out["train"] = carved["train"]
    cls = datasets.IterableDatasetDict if streaming else datasets.DatasetDict
    return cls(train=out["train"], validation=out["validation"], test=out["test"])


# -- files ----------------------------------------------------------------------------------
def _resolve_files(path: str | os.PathLike, base: str | None = None) -> list[str]:
    path = os.path.expanduser(str(path))
    if base and not os.path.isabs(path):
        path = os.path.join(os.path.expanduser(base), path)
    files = sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
    if not files:
        raise DataError(f"No file matches {path!r}. Check data.path.")
    for f in files:
        if os.path.isdir(f):
            pattern = os.path.join(f, "*.txt")
            raise DataError(f"data.path: {f!r} is a directory, not a data file. Point data.path at a file, or at the "
                            f"files in it with a glob ('data.path={pattern}'), or use data=disk for a directory "
                            f"written by Dataset.save_to_disk.")
        if not os.path.isfile(f):
            raise DataError(f"data.path: data file {f!r} does not exist (relative paths are taken from the directory "
                            f"you run in: {os.getcwd()}).")
        if os.path.getsize(f) == 0:
            raise DataError(f"data.path: data file {f!r} is empty. Point data.path at a file with text in it.")
    return files


def check_utf8(path: str, chunk_size: int = 1 << 22) -> None:
    """Raise a :class:`DataError` naming the file and the byte offset of the first invalid UTF-8
    sequence (reads the file once, in chunks)."""
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes read before this chunk
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_size)
            pending = len(dec.getstate()[0])  # bytes of an unfinished sequence carried from the last chunk
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path} is not valid UTF-8: byte offset {offset - pending + e.start} ({e.reason}). "
                    f"Fix the file, or set data.encoding_errors=replace (bad bytes become U+FFFD) or "
                    f"data.encoding_errors=ignore (bad bytes are dropped).") from None
            if not chunk:
                return
            offset += len(chunk)


def content_cache_dir(files: Sequence[str], cache_dir: str | None = None) -> str:
    """The ``datasets`` cache directory for local ``files``: ``<cache_dir or HF_DATASETS_CACHE>/
    lstm_pipeline/files/<content digest>``, so that a file replaced under the same path and mtime is
    read again (``datasets`` alone would reuse its old tables) and everything derived from it too."""
    base = os.path.expanduser(str(cache_dir or datasets.config.HF_DATASETS_CACHE))
    try:
        digest = files_digest(files)
    except OSError as e:
        raise DataError(f"Cannot read data file {getattr(e, 'filename', None) or files[0]}: "
                        f"{e.strerror or e}. Check data.path and the file's permissions.") from None
    return os.path.join(base, "lstm_pipeline", "files", digest)


def check_has_text(ds: datasets.Dataset, column: str, where: str) -> None:
    """Raise a :class:`DataError` naming ``where`` (the files) when ``column`` holds characters but
    all of them are whitespace: a corpus of only line breaks (or spaces and line breaks) has nothing
    to learn. A column with no characters at all is left to the tokenizer step, which says so. One
    pass over the Arrow column (``pyarrow.compute``), no Python loop over rows."""
    import pyarrow.compute as pc

    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    col = table.column(column)
    if len(col) and pc.max(pc.utf8_length(pc.utf8_trim_whitespace(col.slice(0, 1000)))).as_py():
        return  # the usual case, decided by the first rows
    longest = pc.max(pc.utf8_length(col)).as_py() if len(col) else 0
    if not longest or pc.max(pc.utf8_length(pc.utf8_trim_whitespace(col))).as_py():
        return
    breaks_only = not pc.max(pc.utf8_length(pc.utf8_trim(col, characters="\r\n"))).as_py()
    what = "only line breaks" if breaks_only else "only spaces, tabs and line breaks"
    raise DataError(f"{where} holds {what} ({len(col)} rows): there is no text to learn from. "
                    f"Point data.path at a file with text in it.")


def _load_files(fmt: str, data_files, files: Sequence[str], policy: str, streaming: bool = False, **kwargs):
    """``datasets.load_dataset`` on local files. With ``encoding_errors=strict`` a file that is not
    UTF-8 fails the load; only then is it read again by :func:`check_utf8`, for a message with the
    file and byte offset, so a start that hits the datasets cache does not read the corpus at all.
    A stream decodes lazily (the error would come mid-training) and the json reader does not apply
    ``encoding_errors`` at all: those files are checked first."""
    to_check = [f for f in files if not f.endswith(".gz")] if policy == "strict" and fmt in ("text", "json", "csv") else []
    if streaming or fmt == "json":
        for f in to_check:
            check_utf8(f)
    if not streaming:  # datasets keys local files on path + mtime: its cache is kept per content instead
        kwargs["cache_dir"] = content_cache_dir(files, kwargs.get("cache_dir"))
    try:
        return datasets.load_dataset(fmt, data_files=data_files, streaming=streaming, **kwargs)
    except datasets.exceptions.DatasetGenerationError as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, UnicodeDecodeError):
            for f in to_check:
                check_utf8(f)  # raises, naming the file and offset
        raise DataError(f"Could not read {', '.join(files[:3])} as {fmt}: {cause or e}") from e


def _pieces(text: str, max_chars: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_chars`` characters, each ending after a space or line
    break where one falls in its second half (else cut mid-word); ``"".join(pieces) == text``."""
    out, i, n = [], 0, len(text)
    while n - i > max_chars:
        end = i + max_chars
        cut = max(text.rfind(" ", i + max_chars // 2, end), text.rfind("\n", i + max_chars // 2, end))
        end = cut + 1 if cut >= 0 else end
        out.append(text[i:end])
        i = end
    out.append(text[i:])
    return out


def cut_long_rows(ds: datasets.Dataset, column: str, max_chars: int, where: str | None = None) -> datasets.Dataset:
    """Rows of ``column`` longer than ``max_chars`` characters become several rows of at most
    ``max_chars`` (see :func:`_pieces`; the rows still concatenate to the same text), so that a file
    of few, long lines (a one-line book) splits into train/validation/test and is tokenised in
    bounded pieces: memory then grows with ``max_chars`` times the encoding batch, not with the
    length of a line. Returns ``ds`` itself (same fingerprint, caches kept) when no row is longer;
    ``max_chars=0`` keeps every row whole. The cut is a cached ``datasets.map``."""
    if not max_chars:
        return ds
    if not isinstance(max_chars, int) or max_chars < 64:
        raise DataError(f"data.max_row_chars={max_chars!r} is not valid: use 0 (keep rows whole) or an integer >= 64.")
    import pyarrow.compute as pc

    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    longest = pc.max(pc.utf8_length(table.column(column))).as_py() if len(ds) else 0
    if not longest or longest <= max_chars:
        return ds
    log = __import__("logging").getLogger(__name__)
    log.info("%s: rows up to %d characters long are cut into pieces of at most %d (data.max_row_chars)",
             where or "the data", longest, max_chars)

    def cut(batch):
        return {column: [p for t in batch[column] for p in ([t] if t is None or len(t) <= max_chars
                                                            else _pieces(t, max_chars))]}

    others = [c for c in ds.column_names if c != column]
    return ds.map(cut, batched=True, batch_size=16, remove_columns=others, desc="cutting long rows")


def _format_of(files: Sequence[str], fmt: str | None) -> str:
    if fmt:
        if fmt not in set(FORMATS.values()):
            raise DataError(f"data.format={fmt!r} is not supported; use one of: text, json, parquet, csv.")
        return fmt
    exts = {os.path.splitext(f.removesuffix(".gz"))[1].lower() for f in files}
    kinds = {FORMATS.get(e) for e in exts}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"Cannot tell the format of {', '.join(files[:3])} from the extension(s) {', '.join(sorted(exts))}: "
                        f"set data.format to one of text, json, parquet, csv.")
    return kinds.pop()


class _SourceBase:
    """Options shared by the built-in sources."""

    lstm_pipeline_api = "1"
    _files: list[str] | None = None

    def _common(self, text_column, split_names, val_fraction, test_fraction, val_count, test_count, shuffle,
                seed, document_separator, eos_token, min_length, streaming):
        self.text_column = text_column          # column holding the text
        self.split_names = dict(split_names or {})  # e.g. {validation: valid}
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.val_count, self.test_count = val_count, test_count
        self.shuffle, self.seed = shuffle, seed  # carve at random (seeded) rather than off the end
        self.document_separator = document_separator  # text appended to every row before tokenising
        self.eos_token = eos_token              # token id appended after every row when encoding
        self.min_length = min_length            # drop rows with fewer characters (after stripping)
        self.streaming = streaming

    def describe(self) -> str:
        """The data this source reads, for messages: its files or its path."""
        files = getattr(self, "_files", None)
        if files:
            return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        return str(self.path)

    def _finish(self, dd):
        dd = standard_splits(dd, split_names=self.split_names, val_fraction=self.val_fraction,
                             test_fraction=self.test_fraction, val_count=self.val_count,
                             test_count=self.test_count, shuffle=self.shuffle, seed=self.seed, where=self.describe())
        check_column(dd, self.text_column, self.describe())
        if not self.streaming and "train" in dd:
            check_has_text(dd["train"], self.text_column, self.describe())
        if self.min_length:
            col, m = self.text_column, self.min_length
            dd = type(dd)({k: v.filter(lambda b: [t is not None and len(t.strip()) >= m for t in b[col]],
                                       batched=True, **({} if self.streaming else {"desc": "filtering"}))
                           for k, v in dd.items()})
        return dd


class SharedOptions:
    """A data source (typically a plugin's) given the shared ``data.*`` settings it does not take
    itself: ``eos_token``, ``document_separator`` and ``cache_dir`` become its attributes (the
    pipeline reads them), ``min_length`` drops rows with fewer characters (after stripping) from
    every split it loads, ``streaming=True`` turns the splits into ``IterableDataset`` streams
    (tokenised on the fly). Every other attribute is the wrapped source's."""

    def __init__(self, source, eos_token: str | None = None, document_separator: str | None = None,
                 min_length: int = 0, streaming: bool = False, cache_dir: str | None = None):
        self.source = source
        for key, value in (("eos_token", eos_token), ("document_separator", document_separator),
                           ("cache_dir", cache_dir)):
            if value is not None:
                setattr(self, key, value)
        if not (isinstance(min_length, int) and min_length >= 0):
            raise DataError(f"data.min_length must be an integer >= 0, got {min_length!r}.")
        self.min_length, self.streaming = min_length, bool(streaming)

    def __getattr__(self, name: str):
        if name == "source":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def load(self):
        dd = self.source.load()
        col, m = getattr(self.source, "text_column", "text"), self.min_length
        if m:
            dd = type(dd)({k: v.filter(lambda b: [t is not None and len(t.strip()) >= m for t in b[col]], batched=True)
                           for k, v in dd.items()})
        if self.streaming and isinstance(dd, datasets.DatasetDict):
            dd = datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in dd.items()})
        return dd


def with_shared_options(source, **shared):
    """The ``DATA_SOURCES`` registry's adapter: ``source`` given the shared settings it does not take."""
    return SharedOptions(source, **shared)


def _is_text(feature) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _describe(feature) -> str:
    if isinstance(feature, datasets.Value):
        kind = {"int": "numbers", "uint": "numbers", "float": "numbers", "bool": "true/false values"}
        return next((v for k, v in kind.items() if feature.dtype.startswith(k)), f"{feature.dtype} values")
    name = type(feature).__name__
    if name == "Json":
        return "a mix of text and other values (numbers, lists or objects)"
    if name in ("List", "Sequence", "LargeList") or isinstance(feature, list):
        return "lists"
    return "objects" if isinstance(feature, dict) else f"{name} values"


def check_column(dd, column: str, where: str | None = None) -> None:
    """Every split has ``column`` and it holds text (strings; a missing value reads as empty).
    Raises :class:`DataError` naming the column, the files (``where``) and the columns that do hold
    text: a column of numbers is far more often the wrong column (an id, a label) than a corpus, so it
    is refused rather than turned into digits."""
    at = f" in {where}" if where else ""
    for split, ds in dd.items():
        names = ds.column_names
        first = None
        if names is None:  # a stream whose features are unknown until read
            if split == "train":
                first = next(iter(ds))
                names = list(first.keys())
            else:
                names = [column]
        if column not in names:
            raise DataError(f"The {split} split{at} has no column '{column}'. Its columns are: {', '.join(names)}. "
                            f"Set data.text_column to one of them.")
        features = ds.features
        if features is not None and column in features:
            feature = features[column]
            if _is_text(feature):
                continue
            what = _describe(feature)
            texts = [k for k, f in features.items() if _is_text(f)]
        elif first is not None and first[column] is not None and not isinstance(first[column], str):
            what = f"{type(first[column]).__name__} values (the first row holds {first[column]!r})"
            texts = [k for k, v in first.items() if isinstance(v, str)]
        else:
            continue
        advice = (f"Set data.text_column to a column of text: {', '.join(texts)}." if texts else
                  "Point data.text_column at a column of text, or write the values as JSON strings in the file.")
        raise DataError(f"data.text_column='{column}': the column must hold text (strings) but holds {what} "
                        f"({split} split{at}). {advice}")


class TextSource(_SourceBase):
    """Plain-text files through the ``datasets`` ``text`` builder, one row per line
    (line breaks kept, so that concatenating the rows gives the file back).
    ``path: null`` is the bundled Tiny Shakespeare corpus."""

    text_column = "text"
    eos_token = None
    document_separator = None

    def __init__(self, path: str | None = None, val_fraction: float = 0.05, test_fraction: float = 0.05,
                 cache_dir: str | None = None, encoding_errors: str = "strict",
                 num_proc: int | None = None, max_row_chars: int = 4096):
        self.max_row_chars = max_row_chars  # longer lines are cut into rows of at most this many characters (0: never)
        self.num_proc = num_proc          # encoding workers (datasets.map)
        self.path = path                  # file or glob; null = bundled Tiny Shakespeare
        self.val_fraction = val_fraction  # last-but-one contiguous block
        self.test_fraction = test_fraction  # last contiguous block
        self.cache_dir = cache_dir        # datasets cache (default: HF_DATASETS_CACHE)
        self.encoding_errors = encoding_errors  # strict (error naming file and byte offset), replace, ignore

    def load(self) -> datasets.DatasetDict:
        files = _resolve_files(self.path) if self.path else [str(bundled_corpus())]
        _check_policy(self.encoding_errors)
        self._files = files
        ds = _load_files("text", files, files, self.encoding_errors, split="train", keep_linebreaks=True,
                         cache_dir=self.cache_dir, encoding_errors=self.encoding_errors, encoding=TEXT_ENCODING)
        if len(ds) == 0:
            raise DataError(f"No text in {self.describe()}: data.path names files without text.")
        check_has_text(ds, "text", self.describe())
        ds = cut_long_rows(ds, "text", self.max_row_chars, self.describe())
        return contiguous_splits(ds, self.val_fraction, self.test_fraction, where=self.describe())


def _check_policy(policy: str) -> None:
    if policy not in ENCODING_ERRORS:
        raise DataError(f"data.encoding_errors={policy!r}: use one of {', '.join(ENCODING_ERRORS)}.")


class FilesSource(_SourceBase):
    """Local text, JSON-lines, Parquet or CSV files (or globs) through ``datasets``' packaged
    builders. ``path`` is one path/glob, a list of them, or a mapping split -> path(s)."""

    def __init__(self, path: Any, format: str | None = None, text_column: str = "text", data_dir: str | None = None,
                 sample_by: str = "line", keep_linebreaks: bool = True, encoding_errors: str = "strict",
                 split_names: Mapping[str, str] | None = None, val_fraction: float = 0.05,
                 test_fraction: float = 0.05, val_count: int | None = None, test_count: int | None = None,
                 shuffle: bool = False, seed: int = 0, document_separator: str | None = None,
                 eos_token: str | None = None, min_length: int = 0, streaming: bool = False,
                 cache_dir: str | None = None, num_proc: int | None = None, max_row_chars: int = 4096):
        self.num_proc = num_proc        # encoding workers (datasets.map)
        # text files without eos_token/document_separator: longer rows are cut into rows of at most this many
        # characters (0: never), so a one-line book splits and encodes in bounded memory
        self.max_row_chars = max_row_chars
        self.path = path                # path, glob, list, or {split: path(s)}
        self.format = format            # text, json, parquet, csv (default: from the extension)
        self.data_dir = data_dir        # base directory for relative paths
        self.sample_by = sample_by      # text files: line, paragraph or document per row
        self.keep_linebreaks = keep_linebreaks
        self.encoding_errors = encoding_errors  # strict (error naming file and byte offset), replace, ignore
        self.cache_dir = cache_dir
        self._common(text_column, split_names, val_fraction, test_fraction, val_count, test_count, shuffle, seed,
                     document_separator, eos_token, min_length, streaming)

    def data_files(self) -> dict[str, list[str]]:
        p = self.path
        if p is None or p == "???":
            raise DataError("data.path is not set: give a file, a glob, a list or {split: file}.")
        if isinstance(p, Mapping):
            return {str(k): [f for x in ([v] if isinstance(v, str) else v) for f in _resolve_files(x, self.data_dir)]
                    for k, v in p.items()}
        items = [p] if isinstance(p, (str, os.PathLike)) else list(p)
        return {"train": [f for x in items for f in _resolve_files(x, self.data_dir)]}

    def load(self):
        files = self.data_files()
        all_files = [f for fs in files.values() for f in fs]
        self._files = all_files
        fmt = _format_of(all_files, self.format)
        _check_policy(self.encoding_errors)
        if self.document_separator is None and fmt != "text":  # rows are documents: keep them apart
            self.document_separator = "\n"
        kwargs: dict[str, Any] = {}
        if fmt in ("text", "json", "csv"):
            kwargs["encoding_errors"] = self.encoding_errors
        if fmt in ("text", "csv"):  # (the json reader drops a leading BOM itself)
            kwargs["encoding"] = TEXT_ENCODING
        if fmt == "text":
            if self.sample_by not in ("line", "paragraph", "document"):
                raise DataError(f"data.sample_by={self.sample_by!r}: use line, paragraph or document.")
            kwargs.update(sample_by=self.sample_by, keep_linebreaks=self.keep_linebreaks)
        if fmt == "csv" and any(f.endswith(".tsv") for f in all_files):
            kwargs["sep"] = "\t"
        dd = _load_files(fmt, files, all_files, self.encoding_errors, streaming=self.streaming,
                         cache_dir=self.cache_dir, **kwargs)
        if fmt == "text" and not self.streaming and not self.eos_token and not self.document_separator:
            # rows of a plain text stream: cutting one changes nothing in the stream of text
            dd = type(dd)({k: cut_long_rows(v, "text", self.max_row_chars, self.describe()) for k, v in dd.items()})
        return self._finish(dd)


class HubSource(_SourceBase):
    """``datasets.load_dataset(path, config_name, split, revision, data_files, streaming)``: a dataset on
    the Hugging Face Hub (``path: wikitext``, ``config_name: wikitext-2-raw-v1``; ``data.name`` is taken:
    it selects this source) or a local dataset directory / data files."""

    def __init__(self, path: str, config_name: str | None = None, split: str | None = None, revision: str | None = None,
                 data_files: Any = None, data_dir: str | None = None, text_column: str = "text",
                 split_names: Mapping[str, str] | None = None, val_fraction: float = 0.05,
                 test_fraction: float = 0.05, val_count: int | None = None, test_count: int | None = None,
                 shuffle: bool = False, seed: int = 0, document_separator: str | None = None,
                 eos_token: str | None = None, min_length: int = 0, streaming: bool = False,
                 cache_dir: str | None = None, num_proc: int | None = None):
        self.num_proc = num_proc
        # config_name is load_dataset's `name` (data.name selects this source)
        self.path, self.config_name, self.split, self.revision = path, config_name, split, revision
        self.data_files, self.data_dir, self.cache_dir = data_files, data_dir, cache_dir
        self._common(text_column, split_names, val_fraction, test_fraction, val_count, test_count, shuffle, seed,
                     document_separator, eos_token, min_length, streaming)

    def load(self):
        if not self.path or self.path == "???":
            raise DataError("data.path is not set: a Hub dataset name (e.g. wikitext) or a local dataset directory.")
        try:
            dd = datasets.load_dataset(self.path, self.config_name, split=self.split, revision=self.revision,
                                       data_files=self.data_files, data_dir=self.data_dir,
                                       streaming=self.streaming, cache_dir=self.cache_dir)
        except ValueError as e:
            msg = str(e)
            if "Unknown split" in msg or "Bad split" in msg:
                raise DataError(f"data.split={self.split!r} does not exist in {self.path}: {msg}") from e
            raise
        except datasets.exceptions.DatasetGenerationError as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, UnicodeDecodeError):  # local files that are not UTF-8: this source reads them strictly
                raise DataError(f"data.path={self.path!r}: a data file is not valid UTF-8 ({cause.reason} at byte "
                                f"{cause.start} of a chunk). data=hub reads files strictly: fix the file, or read "
                                f"the files with data=files data.path=<the files>, which names the file and byte "
                                f"offset and takes data.encoding_errors=replace (bad bytes become U+FFFD).") from e
            raise DataError(f"data.path={self.path!r}: could not read the dataset: {cause or e}") from e
        return self._finish(dd)


class DiskSource(_SourceBase):
    """A dataset (or dataset dict) written with ``save_to_disk``, read with ``datasets.load_from_disk``
    (memory-mapped)."""

    def __init__(self, path: str, text_column: str = "text", split_names: Mapping[str, str] | None = None,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, val_count: int | None = None,
                 test_count: int | None = None, shuffle: bool = False, seed: int = 0,
                 document_separator: str | None = None, eos_token: str | None = None, min_length: int = 0,
                 num_proc: int | None = None):
        self.path, self.num_proc = path, num_proc
        self._common(text_column, split_names, val_fraction, test_fraction, val_count, test_count, shuffle, seed,
                     document_separator, eos_token, min_length, False)

    def load(self):
        p = os.path.expanduser(str(self.path))
        if not os.path.exists(p):
            raise DataError(f"data.path={self.path!r} does not exist: data=disk reads a directory written by "
                            f"Dataset.save_to_disk.")
        if not os.path.isdir(p):
            raise DataError(f"data.path={self.path!r} is a file, not a directory written by Dataset.save_to_disk: "
                            f"read data files with data=files data.path={self.path}.")
        if not any(os.path.isfile(os.path.join(p, f)) for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            raise DataError(f"data.path={self.path!r} is a directory but not one written by Dataset.save_to_disk (it has "
                            f"no dataset_dict.json or dataset_info.json): read the files in it with data=files "
                            f"'data.path={os.path.join(str(self.path), '*.txt')}', or save the dataset with save_to_disk.")
        return self._finish(datasets.load_from_disk(p))
