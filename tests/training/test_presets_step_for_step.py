"""The wlm_medium and char_rnn presets train step for step as their references' loops.

Through the pipeline (``LanguageModelTask`` + ``StreamDataModule`` under a Lightning ``Trainer``, with
the preset's optimiser, schedule, batching and clipping) and through a bare loop written as the
reference's code trains (pytorch/examples word_language_model: hand-written SGD after
``clip_grad_norm_``; karpathy/char-rnn: RMSprop after clamping each element of the gradient of the
loss summed over the window), from the same weights on the same streams, with dropout off (the masks
are random): the training losses agree step by step. bench/bench_presets.py compares the full recipes
(dropout and each reference's own initialisation included) over seeds."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lstm_pipeline.api import compose_train
from lstm_pipeline.config.schema import to_dict
from lstm_pipeline.data.datamodule import StreamDataModule
from lstm_pipeline.data.pipeline import Corpus
from lstm_pipeline.training.module import LanguageModelTask

V = 40


def pipeline_losses(preset: str, overrides: list[str], ids: np.ndarray, epochs: int) -> tuple[list[float], dict]:
    import lightning as L

    cfg, _ = compose_train([f"experiment={preset}", *overrides], run_dir="/tmp/unused")
    torch.manual_seed(0)
    task = LanguageModelTask(model=to_dict(cfg.model), vocab_size=V, optim=to_dict(cfg.optim),
                             scheduler=to_dict(cfg.scheduler))
    start = {k: v.clone() for k, v in task.model.state_dict().items()}
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, out, batch, idx):
            losses.append(float(out["loss"]))

    dm = StreamDataModule(Corpus(tokenizer=None, ids={"train": ids, "validation": ids[:400], "test": ids[:400]}),
                          **to_dict(cfg.batching))
    trainer_cfg = {**to_dict(cfg.trainer), "max_epochs": epochs, "max_steps": -1, "logger": False,
                   "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                   "num_sanity_val_steps": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        L.Trainer(**trainer_cfg, callbacks=[Record()], use_distributed_sampler=False).fit(task, datamodule=dm)
    return losses, start


def streams(ids: np.ndarray, batch: int) -> torch.Tensor:
    """(L + 1, B): the pipeline's stream layout, B contiguous streams of (N - 1) // B tokens (+ the next)."""
    n = (len(ids) - 1) // batch
    return torch.stack([torch.from_numpy(ids[b * n: b * n + n + 1]) for b in range(batch)], 1)


class BareLSTM(nn.Module):
    """Embedding or one-hot -> nn.LSTM -> Linear, the references' network, loaded from the pipeline's weights."""

    def __init__(self, start: dict, emb: int | None, hidden: int, layers: int):
        super().__init__()
        self.encoder = nn.Embedding(V, emb) if emb else None
        self.rnn = nn.LSTM(emb or V, hidden, layers)
        self.decoder = nn.Linear(hidden, V)
        if emb:
            self.decoder.weight = self.encoder.weight
        with torch.no_grad():
            for k, v in start.items():
                if k.startswith("layers.0.rnn."):
                    getattr(self.rnn, k.rsplit(".", 1)[-1]).copy_(v)
            self.decoder.bias.copy_(start["head.bias"])
            (self.encoder or self.decoder).weight.copy_(start["embedding.weight" if emb else "head.weight"])

    def forward(self, x, hidden):
        inp = self.encoder(x) if self.encoder is not None else F.one_hot(x, V).float()
        out, hidden = self.rnn(inp, hidden)
        return F.log_softmax(self.decoder(out), -1), hidden


@pytest.fixture(scope="module")
def ids():
    rng = np.random.default_rng(0)
    # a little structure to learn: a noisy cycle through the vocabulary
    return ((np.arange(4000) + rng.integers(0, 3, 4000)) % V).astype(np.int64)


def test_wlm_medium_trains_as_word_language_model(ids):
    ids = ids[:4 * 20 * 35 + 1]  # 4 streams of 20 whole windows
    ours, start = pipeline_losses("wlm_medium", ["model.embedding_dim=16", "model.hidden_size=16", "model.dropout=0",
                                                 "model.dropout_input=0", "batching.batch_size=4", "batching.bptt=35"],
                                  ids, epochs=2)
    model, data = BareLSTM(start, 16, 16, 2), streams(ids, 4)
    ref, lr, hidden = [], 20.0, None
    for _ in range(2):
        hidden = None  # word_language_model: a fresh state each epoch
        for i in range(0, data.size(0) - 1, 35):
            x, y = data[i:i + 35], data[i + 1:i + 36]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            model.zero_grad()
            logp, hidden = model(x, hidden)
            loss = F.nll_loss(logp.reshape(-1, V), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            ref.append(loss.item())
    assert len(ours) == len(ref) > 20
    np.testing.assert_allclose(ours, ref, rtol=2e-4)


def test_char_rnn_trains_as_char_rnn(ids):
    ids = ids[:5 * 12 * 50 + 1]  # 5 streams of 12 whole windows (char-rnn's are all seq_length long)
    ours, start = pipeline_losses("char_rnn", ["model.hidden_size=16", "batching.batch_size=5"], ids, epochs=1)
    model, data = BareLSTM(start, None, 16, 2), streams(ids, 5)
    opt = torch.optim.RMSprop(model.parameters(), lr=2e-3, alpha=0.95, eps=1e-8)
    ref, hidden = [], None
    for i in range(0, data.size(0) - 1, 50):
        x, y = data[i:i + 50], data[i + 1:i + 51]
        hidden = None if hidden is None else tuple(h.detach() for h in hidden)
        opt.zero_grad()
        logp, hidden = model(x, hidden)
        loss = F.nll_loss(logp.reshape(-1, V), y.reshape(-1))
        (loss * 50).backward()  # char-rnn: the loss summed over the window's steps
        for p in model.parameters():
            p.grad.clamp_(-5.0, 5.0)  # grad_clip 5, element by element
        opt.step()
        ref.append(loss.item())
    assert len(ours) == len(ref) > 10
    np.testing.assert_allclose(ours, ref, rtol=2e-4)
