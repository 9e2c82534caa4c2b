"""The e-book / Markdown data source: the data-source contract and exact cleaning results."""
import pytest

from lstm_pipeline.data.sources import DataError
from lstm_pipeline.registry import DATA_SOURCES
from lstm_pipeline.testing import DataSourceContract
from lstm_pipeline_extras.ebooks import EbookSource, clean_text

BOOK = """\ufeffThe Project Gutenberg eBook of A Tale\r
\r
This eBook is for the use of anyone anywhere.\r
*** START OF THE PROJECT GUTENBERG EBOOK A TALE ***\r
\r
CHAPTER I\r
\r
It was the best of times, it was the worst of times.\r
\r
\r
\r
It was the age of wisdom.\r
*** END OF THE PROJECT GUTENBERG EBOOK A TALE ***\r
Licence text that must go.\r
"""

MARKDOWN = """---
title: Notes
---
# Chapter *One*

Some **bold** and _italic_ text with a [link](https://example.org) and `code`.
![a picture](img.png)

> A quoted line.

- first item
- second item

```
print("kept")
```
***
<b>Tagged</b> end.
"""


def test_gutenberg_boilerplate_and_line_endings_are_removed():
    assert clean_text(BOOK) == ("CHAPTER I\n\nIt was the best of times, it was the worst of times.\n\n"
                                "It was the age of wisdom.\n")


def test_markdown_markup_is_removed():
    assert clean_text(MARKDOWN) == (
        "Chapter One\n\nSome bold and italic text with a link and code.\n\nA quoted line.\n\n"
        "first item\nsecond item\n\nprint(\"kept\")\nTagged end.\n")


class TestEbookContract(DataSourceContract):
    def make_source(self, tmp_path):
        books = tmp_path / "books"
        books.mkdir(exist_ok=True)
        (books / "a.md").write_text(MARKDOWN * 20)
        (books / "b.txt").write_text(BOOK * 20)
        (books / "ignored.json").write_text("{}")
        return EbookSource(str(books), val_fraction=0.1, test_fraction=0.1)


def test_rows_concatenate_to_the_cleaned_files(tmp_path):
    (tmp_path / "a.md").write_text(MARKDOWN * 10)
    (tmp_path / "b.txt").write_text(BOOK * 10)
    src = DATA_SOURCES.build({"name": "ebooks", "path": str(tmp_path), "val_fraction": 0.1, "test_fraction": 0.1})
    dd = src.load()
    joined = "".join(t for split in ("train", "validation", "test") for t in dd[split]["text"])
    assert joined == clean_text(MARKDOWN * 10) + "\n" + clean_text(BOOK * 10)
    assert "Licence" not in joined and "**" not in joined


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory or file"):
        EbookSource(str(tmp_path / "missing")).load()
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="No .md, .markdown, .txt files.*data.extensions"):
        EbookSource(str(tmp_path)).load()
