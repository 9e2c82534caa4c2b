"""Where benches find the shared data sets (WikiText-2's valid/test, Tiny Shakespeare):
``$LSTM_PIPELINE_SHARED_DATA``, else ``../shared/data`` beside the checkout. A missing file stops the
bench with one line saying where it looked and what to set."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "LSTM_PIPELINE_SHARED_DATA"


def shared_data_dir() -> Path:
    """The shared data folder (it may not exist: :func:`shared_data` says so)."""
    return Path(os.environ.get(ENV) or ROOT.parent / "shared" / "data")


def shared_data(*parts: str) -> Path:
    """``<shared data>/<parts...>``; SystemExit with one line if it is not there."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        raise SystemExit(f"{path} not found: set {ENV} to the folder holding {'/'.join(parts)} "
                         f"(by default ../shared/data beside the checkout).")
    return path
