"""Any tokenizer saved as ``tokenizer.json`` (by HF ``tokenizers``/``transformers`` or an earlier
run): loaded as is, nothing is trained. ``lossless`` is whatever you declare."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer


class PretrainedTokenizer:
    lstm_pipeline_api = "1"
    needs_training = False
    lossless = False

    def __init__(self, path: str, lossless: bool = False):
        self.path = path          # a tokenizer.json, or a directory holding one
        self.lossless = lossless  # declare True if decode(encode(x)) == x holds for it

    def train(self, texts: Iterable[str] | None = None) -> Tokenizer:
        p = Path(self.path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"tokenizer.path={self.path!r} does not exist: give a tokenizer.json, or a "
                                    f"directory holding one (a run or model directory).")
        if p.is_dir():
            if not (p / "tokenizer.json").is_file():
                raise FileNotFoundError(f"tokenizer.path={self.path!r} is a directory without a tokenizer.json: give "
                                        f"the tokenizer.json file, or a run or model directory holding one.")
            p = p / "tokenizer.json"
        return Tokenizer.from_file(str(p))
