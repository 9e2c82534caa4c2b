"""LightningDataModule over an encoded :class:`Corpus`: contiguous BPTT streams per rank."""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from .batching import StreamBatches
from .pipeline import Corpus


class StreamDataModule(L.LightningDataModule):
    def __init__(self, corpus: Corpus, batch_size: int = 32, bptt: int = 100, eval_batch_size: int = 16):
        super().__init__()
        self.corpus = corpus
        self.batch_size, self.bptt, self.eval_batch_size = batch_size, bptt, eval_batch_size

    def _rank(self):
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _loader(self, split: str, batch_size: int, start: int = 0) -> DataLoader:
        rank, world = self._rank()
        ds = StreamBatches(self.corpus.ids[split], batch_size, self.bptt, rank, world, split=split)
        ds.start = start % len(ds)
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        # exact resume: continue from the window after the last completed one of this epoch
        start = 0
        if self.trainer is not None:
            start = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return self._loader("train", self.batch_size, start)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size)
