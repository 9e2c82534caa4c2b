"""Truncated-BPTT batching over contiguous streams.

The token array is cut into ``world_size * batch_size`` contiguous streams of equal length;
rank ``r`` owns streams ``r*B .. (r+1)*B``. Window ``i`` of every stream is one batch, so row b of
batch i+1 continues row b of batch i and the hidden state can be carried (detached) between them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .sources import DataError


class StreamBatches(IterableDataset):
    def __init__(self, ids: np.ndarray, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1,
                 split: str = "train"):
        n_streams = batch_size * world_size
        stream_len = (len(ids) - 1) // n_streams  # inputs per stream; +1 token for the last target
        if stream_len < 1:
            raise DataError(
                f"The {split} split has {len(ids)} tokens: too short for {n_streams} streams "
                f"(batch_size {batch_size} x {world_size} processes). Lower the batch size or use more data."
            )
        self.batch_size, self.bptt, self.split = batch_size, bptt, split
        self.rank, self.world_size = rank, world_size
        self.stream_len = stream_len
        arr = np.asarray(ids[: n_streams * stream_len + 1], dtype=np.int64)
        starts = np.arange(rank * batch_size, (rank + 1) * batch_size) * stream_len
        idx = starts[:, None] + np.arange(stream_len + 1)[None, :]
        self.streams = torch.from_numpy(arr[idx])  # (B, stream_len + 1), this rank's streams
        self.start = 0  # first window of the next iteration (set on exact resume)

    def __len__(self) -> int:
        return math.ceil(self.stream_len / self.bptt)

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = i * self.bptt
        b = min(a + self.bptt, self.stream_len)
        return self.streams[:, a:b], self.streams[:, a + 1 : b + 1]  # (B, T) inputs, (B, T) targets

    def __iter__(self):
        start, self.start = self.start, 0
        for i in range(start, len(self)):
            yield self.window(i)
