"""Batching modes over an encoded id array (``np.memmap``; windows are sliced lazily, so the
corpus is never copied into RAM as int64).

* ``stream`` (:class:`StreamBatches`): the ids are cut into ``world_size * batch_size``
  contiguous streams of equal length; rank ``r`` owns streams ``r*B .. (r+1)*B``. Window ``i``
  of every stream is one batch, so row b of batch i+1 continues row b of batch i and the hidden
  state can be carried (detached) between them. Optionally with variable-length BPTT windows.
* ``random_windows`` (:class:`RandomWindows`): B windows at random offsets (nanoGPT style),
  seeded by (seed, epoch, rank, batch index); the state is reset at every batch.
* ``documents`` (:class:`DocumentBatches`): documents packed one after another into B rows;
  ``reset_mask`` marks where a new document starts, and the prediction across a document
  boundary is ignored (target -100).

Batches are ``(x, y)`` or ``(x, y, reset_mask)``: x, y (B, T) int64, reset_mask (B, T) bool
marks positions whose recurrent state must be zeroed before that position is read (see
:func:`lstm_pipeline.data.resets.forward_with_resets`).
"""
from __future__ import annotations

import heapq
import math

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .sources import DataError

IGNORE_INDEX = -100  # targets F.cross_entropy skips


def _too_short(split: str, n: int, need: int, what: str) -> DataError:
    return DataError(f"The {split} split has {n} tokens: shorter than one batch ({what} needs at least {need}). "
                     f"Lower batching.batch_size / batching.bptt (eval_batch_size for validation/test) or use more data.")


def vbptt_lengths(total: int, bptt: int, rng: np.random.Generator, p_full: float = 0.95, std: float = 5.0,
                  min_len: int = 5) -> list[int]:
    """AWD-LSTM variable BPTT: each window's length is drawn around ``bptt`` (with probability
    ``p_full``) or ``bptt / 2``, with standard deviation ``std``, at least ``min_len``, at most
    ``bptt + 2 * std``; the lengths cover ``total`` positions exactly."""
    out, pos = [], 0
    while pos < total:
        mean = bptt if rng.random() < p_full else bptt / 2
        n = int(round(rng.normal(mean, std)))
        n = max(min_len, min(n, int(bptt + 2 * std)))
        n = min(n, total - pos)
        out.append(n)
        pos += n
    return out


class _Windows(IterableDataset):
    """Base of the memmap-backed batchings: ``window(i)`` for i in ``range(len(self))``.

    Iteration starts at ``self.start`` (exact resume), once. With DataLoader workers each worker
    yields every ``num_workers``-th window, and the loader takes them from the workers in turn: the
    order is that of one process."""

    start = 0  # first window of the next iteration (set on exact resume)

    def __iter__(self):
        start, self.start = self.start, 0
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(start + worker, len(self), workers):
            yield self.window(i)


class StreamBatches(_Windows):
    def __init__(self, ids: np.ndarray, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1,
                 split: str = "train", lengths: list[int] | None = None):
        n_streams = batch_size * world_size
        stream_len = (len(ids) - 1) // n_streams  # inputs per stream; +1 token for the last target
        if stream_len < 1:
            key = "batching.batch_size" if split == "train" else "batching.eval_batch_size (evaluate: batch_size)"
            raise DataError(
                f"The {split} split has {len(ids)} tokens: too short for {n_streams} streams "
                f"(batch_size {batch_size} x {world_size} processes). Lower {key} or use more data "
                f"(data.val_fraction / data.test_fraction size the validation and test splits)."
            )
        self.batch_size, self.bptt, self.split = batch_size, bptt, split
        self.rank, self.world_size = rank, world_size
        self.stream_len = stream_len
        self.ids = ids
        self.starts = np.arange(rank * batch_size, (rank + 1) * batch_size) * stream_len  # (B,) this rank's streams
        if lengths is None:
            lengths = [min(bptt, stream_len - a) for a in range(0, stream_len, bptt)]
        if sum(lengths) != stream_len:
            raise ValueError(f"window lengths cover {sum(lengths)} positions, the streams have {stream_len}")
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # window i = [o[i], o[i+1])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        idx = self.starts[:, None] + np.arange(a, b + 1)[None, :]  # (B, T + 1)
        rows = torch.from_numpy(np.asarray(self.ids[idx], dtype=np.int64))
        return rows[:, :-1], rows[:, 1:]  # (B, T) inputs, (B, T) targets



class RandomWindows(_Windows):
    """``batch_size`` windows of ``bptt`` tokens at random offsets. An epoch has as many batches
    as the stream mode would (``len(ids) // (B * T * world)``), so an epoch sees about every token
    once. Batch i of epoch e on rank r depends only on (seed, e, r, i): exact resume."""

    def __init__(self, ids: np.ndarray, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epoch=0, split: str = "train"):
        if len(ids) < bptt + 1:
            raise _too_short(split, len(ids), bptt + 1, f"a window of bptt={bptt}")
        self.ids, self.batch_size, self.bptt = ids, batch_size, bptt
        self.rank, self.seed = rank, seed
        self.epoch = epoch if callable(epoch) else (lambda: epoch)  # read at iteration time (the trainer's epoch)
        self.n_batches = max(1, (len(ids) - 1) // (batch_size * bptt * world_size))

    def __len__(self) -> int:
        return self.n_batches

    def offsets(self, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch(), self.rank, i])
        return rng.integers(0, len(self.ids) - self.bptt, size=self.batch_size)  # (B,)

    def window(self, i: int):
        idx = self.offsets(i)[:, None] + np.arange(self.bptt + 1)[None, :]  # (B, T + 1)
        rows = torch.from_numpy(np.asarray(self.ids[idx], dtype=np.int64))
        reset = torch.zeros(self.batch_size, self.bptt, dtype=torch.bool)
        reset[:, 0] = True  # windows are unrelated: start every one from the zero state
        return rows[:, :-1], rows[:, 1:], reset



def pack_documents(lengths: np.ndarray, n_rows: int) -> list[list[int]]:
    """Assign documents (in order) to ``n_rows`` rows, each to the currently shortest row:
    deterministic, balanced, order kept within a row. Returns the document indices per row."""
    heap = [(0, r) for r in range(n_rows)]
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    for d, n in enumerate(lengths):
        if n == 0:
            continue
        used, r = heapq.heappop(heap)
        rows[r].append(d)
        heapq.heappush(heap, (used + int(n), r))
    return rows


class DocumentBatches(_Windows):
    """Documents packed into rows (one document after another in a row, never split across
    rows); ``reset_mask`` is True where a document starts, the target of a document's last
    token is ``IGNORE_INDEX`` (nothing is predicted across a boundary) and rows are padded at
    the end (input ``pad_id``, target ``IGNORE_INDEX``). Rank r owns rows r*B .. (r+1)*B.

    Only the layout is kept (per row: where each document starts in the row and in ``ids``);
    each window is read from ``ids`` (a memmap) when it is asked for, so the corpus is never
    copied into RAM.

    ``start_id`` (the end-of-text token, when the data has one): every document is read with that
    token in front of it, so that from the reset state the model reads an end-of-text token and
    learns to predict a document's first token. Generation from an empty prompt starts the same
    way (the zero state, then the end-of-text token: ``bos_token_id``)."""

    def __init__(self, ids: np.ndarray, doc_offsets: np.ndarray, batch_size: int, bptt: int, rank: int = 0,
                 world_size: int = 1, split: str = "train", pad_id: int = 0, align: bool = False,
                 start_id: int | None = None):
        offsets = np.asarray(doc_offsets, dtype=np.int64)
        lengths = np.diff(offsets)
        self.lead = int(start_id is not None)  # a leading start token per (non-empty) document
        if self.lead:
            lengths = lengths + (lengths > 0)
        # align: every document starts at a window boundary (padded up to a multiple of bptt), so the
        # state is only ever reset at column 0 and a window costs one model call
        span = (-(-lengths // bptt) * bptt) if align else lengths
        if (lengths > 0).sum() < batch_size * world_size:
            raise DataError(f"The {split} split has {(lengths > 0).sum()} non-empty documents: fewer than one per row "
                            f"({batch_size} rows x {world_size} processes). Lower batching.batch_size or use more data.")
        rows = pack_documents(span, batch_size * world_size)
        self.width = max(int(span[r].sum()) for r in rows)  # every rank has the same number of windows
        # per row of this rank: (position in the row, start in ids, length) of each of its documents
        self.rows = []
        for docs in rows[rank * batch_size: (rank + 1) * batch_size]:
            d = np.asarray(docs, dtype=np.int64)
            self.rows.append((np.cumsum(span[d]) - span[d], offsets[d], lengths[d]))
        self.ids, self.pad_id, self.bptt, self.split = ids, pad_id, bptt, split
        self.start_id = start_id

    def _read(self, s: int, i: int, j: int) -> np.ndarray:
        """Tokens i..j-1 of the document that starts at ``ids[s]`` (with its leading start token)."""
        if not self.lead:
            return self.ids[s + i: s + j]
        if i > 0:
            return self.ids[s + i - 1: s + j - 1]
        return np.concatenate([np.asarray([self.start_id], dtype=np.int64), np.asarray(self.ids[s: s + j - 1])])

    def __len__(self) -> int:
        return math.ceil(self.width / self.bptt)

    def window(self, i: int):
        a, e = i * self.bptt, min((i + 1) * self.bptt, self.width)  # row positions [a, e)
        x = np.full((len(self.rows), e - a), self.pad_id, dtype=np.int64)
        y = np.full((len(self.rows), e - a), IGNORE_INDEX, dtype=np.int64)
        reset = np.zeros((len(self.rows), e - a), dtype=bool)
        for r, (pos, starts, lengths) in enumerate(self.rows):
            k = max(int(np.searchsorted(pos, a, side="right")) - 1, 0)  # the document under position a
            while k < len(pos) and pos[k] < e:
                p, s, n = int(pos[k]), int(starts[k]), int(lengths[k])
                lo, hi = max(a, p), min(e, p + n)  # the document's part of this window
                if lo < hi:
                    hy = min(e, p + n - 1)  # its last token predicts nothing
                    tokens = self._read(s, lo - p, max(hi, hy + 1) - p)  # inputs and targets in one read
                    x[r, lo - a: hi - a] = tokens[: hi - lo]
                    if lo < hy:
                        y[r, lo - a: hy - a] = tokens[1: hy - lo + 1]
                if p >= a:
                    reset[r, p - a] = True
                k += 1
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(reset)

