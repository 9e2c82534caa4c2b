"""LightningDataModule over an encoded :class:`Corpus`: the training batches come from the
``batching.mode`` (stream, random_windows, documents; a streaming corpus always streams), the
validation and test batches are contiguous streams with the state carried across the split."""
from __future__ import annotations

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from ..config.schema import BatchingSchema
from .batching import DocumentBatches, RandomWindows, StreamBatches, vbptt_lengths
from .pipeline import Corpus
from .sources import DataError
from .streaming import StreamingBatches

MODES = ("stream", "random_windows", "documents")

#: the batching defaults: the config schema's (``batching.*``), the one place they are written
_B = BatchingSchema


class _ResumeOnceLoader(DataLoader):
    """Workers get their copy of the dataset when an iteration starts; once they have it, the
    resume offset (``dataset.start``) is cleared here too, so only the first epoch skips windows.
    (Without workers the dataset clears it itself.)"""

    def __iter__(self):
        it = super().__iter__()
        if self.num_workers > 0:
            self.dataset.start = 0
        return it


class StreamDataModule(L.LightningDataModule):
    """The batches of ``corpus``; its settings are ``batching.*`` (:class:`~lstm_pipeline.config.schema.
    BatchingSchema`, whose defaults these are; ``seed`` defaults to 0 here, ``${seed}`` in a run).
    Training callbacks that a batching needs (variable_bptt's learning-rate scaling) come from the same
    config on the training side (:func:`lstm_pipeline.training.run_callbacks.batching_callbacks`).
    Raises :class:`DataError` for an unknown ``mode`` or variable_bptt outside stream mode."""

    def __init__(self, corpus: Corpus, batch_size: int = _B.batch_size, bptt: int = _B.bptt,
                 eval_batch_size: int = _B.eval_batch_size, mode: str = _B.mode,
                 variable_bptt: bool = _B.variable_bptt, bptt_p_full: float = _B.bptt_p_full,
                 bptt_std: float = _B.bptt_std, bptt_min: int = _B.bptt_min, seed: int = 0,
                 num_workers: int = _B.num_workers, align_documents: bool = _B.align_documents):
        super().__init__()
        if mode not in MODES:
            raise DataError(f"batching.mode={mode!r}: use one of {', '.join(MODES)}.")
        if variable_bptt and mode != "stream":
            raise DataError(f"batching.variable_bptt=true needs batching.mode=stream (got {mode!r}).")
        self.corpus = corpus
        self.batch_size, self.bptt, self.eval_batch_size = batch_size, bptt, eval_batch_size
        self.mode, self.variable_bptt, self.seed, self.num_workers = mode, variable_bptt, seed, num_workers
        self.bptt_p_full, self.bptt_std, self.bptt_min = bptt_p_full, bptt_std, bptt_min
        self.align_documents = align_documents

    def _rank(self):
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _dataset(self, split: str, batch_size: int, train: bool):
        rank, world = self._rank()
        c = self.corpus
        if c.streaming:
            return StreamingBatches(c.streams[split], c.tokenizer, c.text_column, batch_size, self.bptt, rank, world,
                                    repeat=train, separator=c.document_separator, eos_token=c.eos_token, split=split)
        ids = c.ids[split]
        if not train or self.mode == "stream":
            lengths = None
            if train and self.variable_bptt:
                n_streams = batch_size * world
                stream_len = (len(ids) - 1) // n_streams
                # drawn once from the seed: the same on every rank, every epoch and after a resume
                rng = np.random.default_rng([self.seed, 0x5EED])
                lengths = vbptt_lengths(stream_len, self.bptt, rng, self.bptt_p_full, self.bptt_std, self.bptt_min)
            return StreamBatches(ids, batch_size, self.bptt, rank, world, split=split, lengths=lengths)
        if self.mode == "random_windows":
            return RandomWindows(ids, batch_size, self.bptt, rank, world, seed=self.seed, epoch=self._epoch, split=split)
        pad = c.tokenizer.token_to_id("<pad>") or 0
        # with an end-of-text token, every document is read after one (what an empty prompt starts from)
        start = c.tokenizer.token_to_id(c.eos_token) if c.eos_token else None
        return DocumentBatches(ids, c.doc_offsets[split], batch_size, self.bptt, rank, world, split=split, pad_id=pad,
                               align=self.align_documents, start_id=start)

    def _loader(self, split: str, batch_size: int, start: int = 0, train: bool = False) -> DataLoader:
        ds = self._dataset(split, batch_size, train)
        if hasattr(ds, "__len__"):
            ds.start = min(start, len(ds))  # an epoch trained to its end: nothing left (the loop then ends it)
        else:
            ds.start = start
        return _ResumeOnceLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        # exact resume: continue from the window after the last one trained in this epoch. ``processed``,
        # not ``completed``: a checkpoint written in ``on_train_batch_end`` (a snapshot,
        # checkpoint.every_n_train_steps) has trained its batch but not yet counted it completed
        start = 0
        if self.trainer is not None:
            start = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return self._loader("train", self.batch_size, start, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size)
