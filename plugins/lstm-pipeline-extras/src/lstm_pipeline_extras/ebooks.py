"""A data source for a directory of e-books / documents in Markdown or plain text, cleaned of
markup before training.

Cleaning (per file): a YAML front-matter block is dropped; a Project Gutenberg header and licence
footer (everything before ``*** START OF ...`` and from ``*** END OF ...``) are dropped; Markdown
and HTML markup is removed (headings' ``#``, emphasis, inline code marks, links keep their text,
images and HTML tags go, list bullets and block-quote marks go, fences go but code stays);
line endings become ``\\n``; runs of blank lines become one. Files are read in sorted order and
joined with a blank line; the splits are contiguous blocks of lines (train | validation | test),
so the text stays a stream.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import datasets

from lstm_pipeline.data.sources import DataError, contiguous_splits

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*?\*\*\*\s*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_INLINE = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),               # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),           # links keep their text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),          # reference links
    (re.compile(r"<[^>\n]+>"), ""),                          # HTML tags
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),    # bold
    (re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])"), r"\2"),  # italics
    (re.compile(r"`([^`\n]+)`"), r"\1"),                     # inline code
]
_LINE = [
    (re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$"), r"\1"),  # headings
    (re.compile(r"^\s{0,3}>\s?"), ""),                       # block quotes
    (re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+"), ""),            # list bullets / numbers
    (re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$"), ""),        # link reference definitions
]
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")          # horizontal rules
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def clean_text(text: str, strip_gutenberg: bool = True) -> str:
    """Markdown / HTML / e-book boilerplate -> plain text (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = _FRONT_MATTER.sub("", text, count=1)
    if strip_gutenberg:
        start = _GUTENBERG_START.search(text)
        if start:
            text = text[start.end():]
        end = _GUTENBERG_END.search(text)
        if end:
            text = text[: end.start()]
    out: list[str] = []
    for line in text.split("\n"):
        if _FENCE.match(line) or _RULE.match(line):
            continue
        for pat, rep in _LINE:
            line = pat.sub(rep, line)
        for pat, rep in _INLINE:
            line = pat.sub(rep, line)
        line = line.rstrip()
        if line or (out and out[-1]):  # at most one blank line in a row
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


class EbookSource:
    """Every ``*.md`` / ``*.markdown`` / ``*.txt`` file under a directory (recursively), cleaned
    of markup; one row per line, line breaks kept (rows concatenated give the cleaned text)."""

    lstm_pipeline_api = "1"
    text_column = "text"

    def __init__(self, path: str, extensions: Sequence[str] = (".md", ".markdown", ".txt"),
                 strip_gutenberg: bool = True, val_fraction: float = 0.05, test_fraction: float = 0.05):
        self.path = path                        # a directory of documents (or one file)
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.strip_gutenberg = strip_gutenberg  # drop Project Gutenberg header and licence
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def files(self) -> list[Path]:
        root = Path(self.path).expanduser()
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise DataError(f"data.path={self.path!r} is not a directory or file. Point it at a folder of "
                            f"{', '.join(self.extensions)} files.")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)
        if not files:
            raise DataError(f"No {', '.join(self.extensions)} files under {root}. Add some, or set "
                            f"data.extensions to the suffixes your files have.")
        return files

    def text(self) -> str:
        parts = [clean_text(f.read_text(encoding="utf-8", errors="replace"), self.strip_gutenberg) for f in self.files()]
        return "\n".join(p for p in parts if p)

    def load(self) -> datasets.DatasetDict:
        text = self.text()
        if not text.strip():
            raise DataError(f"The files under {self.path!r} contain no text once cleaned of markup.")
        rows = text.splitlines(keepends=True)
        return contiguous_splits(datasets.Dataset.from_dict({self.text_column: rows}), self.val_fraction,
                                 self.test_fraction)
