"""Batches from a streaming (``IterableDataset``) corpus, tokenised on the fly.

Each process reads only its shard, ``datasets.distributed.split_dataset_by_node(ds, rank,
world_size)`` (whole files per rank when the number of files divides evenly, else every
``world_size``-th row), so DDP ranks never see the same text. Documents are appended to the
currently shortest of B rows; a batch is emitted whenever every row holds ``bptt + 1`` tokens,
so row b of the next batch continues row b of this one and the state can be carried. Memory is
bounded by a few windows per row whatever the corpus size.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset, get_worker_info

from .sources import DataError


def shard(ds, rank: int, world_size: int):
    return split_dataset_by_node(ds, rank=rank, world_size=world_size) if world_size > 1 else ds


class StreamingBatches(IterableDataset):
    def __init__(self, ds, tokenizer, column: str, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1,
                 repeat: bool = False, separator: str | None = None, eos_token: str | None = None,
                 split: str = "train", encode_batch_size: int = 256):
        self.ds = shard(ds, rank, world_size)
        self.tk, self.column, self.sep = tokenizer, column, separator or ""
        self.eos_id = tokenizer.token_to_id(eos_token) if eos_token else None
        self.batch_size, self.bptt, self.repeat, self.split = batch_size, bptt, repeat, split
        self.encode_batch_size = encode_batch_size
        self.start = 0  # batches to skip on resume (replays the shard's deterministic order)

    def documents(self):
        """Token id lists of this rank's documents, encoded in batches as they stream in."""
        epochs = itertools.count() if self.repeat else [0]
        for epoch in epochs:
            if hasattr(self.ds, "set_epoch"):
                self.ds.set_epoch(epoch)
            rows = iter(self.ds)
            seen = False
            while True:
                chunk = [(r[self.column] or "") + self.sep for r in itertools.islice(rows, self.encode_batch_size)]
                if not chunk:
                    break
                seen = True
                for ids in self.tk.encode_batch(chunk):
                    if self.eos_id is not None:
                        ids = ids + [self.eos_id]
                    if ids:
                        yield ids
            if not seen:
                raise DataError(f"The streaming {self.split} split gave this process (shard) no rows: "
                                f"use more data or fewer processes (trainer.devices, trainer.num_nodes).")

    def __iter__(self):
        if get_worker_info() is not None and get_worker_info().num_workers > 1:
            raise DataError("a streaming corpus is read by one process: set batching.num_workers=0 "
                            "(the datasets stream cannot be split between DataLoader workers).")
        B, T = self.batch_size, self.bptt
        buf = [[] for _ in range(B)]
        emitted = 0
        skip, self.start = self.start, 0
        for ids in self.documents():
            b = min(range(B), key=lambda r: len(buf[r]))  # the shortest row takes the next document
            buf[b].extend(ids)
            while all(len(r) >= T + 1 for r in buf):
                rows = torch.tensor(np.array([r[: T + 1] for r in buf], dtype=np.int64))  # (B, T + 1)
                for r in range(B):
                    del buf[r][:T]  # keep the last target as the next window's first input
                emitted += 1
                if emitted > skip:
                    yield rows[:, :-1], rows[:, 1:]
        if emitted == 0:
            n = sum(len(r) for r in buf)
            train = self.split == "train"
            rows_key = "batching.batch_size" if train else "batching.eval_batch_size"
            carved = "" if train else " (data.val_count / data.test_count for a split carved off the stream)"
            raise DataError(f"The streaming {self.split} split gave {n} tokens to this process: shorter than one batch "
                            f"({B} rows x {T + 1} tokens). Lower {rows_key} / batching.bptt or use more data{carved}.")
