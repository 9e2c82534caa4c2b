"""Each preset against its reference: the reference's published recipe as a bare PyTorch loop, and the
preset through the pipeline (``RecurrentLM`` in ``LanguageModelTask`` and ``StreamDataModule`` under a
Lightning ``Trainer``, with the preset's model, optimiser, schedule, batching and clipping), on the same
token ids, for the same number of epochs, several seeds each. Held-out loss after each epoch.

References (reimplemented from their published code, nothing copied):

* ``wlm_medium``: pytorch/examples word_language_model (``main.py --emsize 650 --nhid 650 --dropout 0.5
  --tied``): Embedding -> dropout -> nn.LSTM(dropout) -> dropout -> Linear, ``init_weights`` U(-0.1, 0.1),
  NLL mean, hand-written SGD lr 20, ``clip_grad_norm_`` 0.25, lr / 4 when the held-out loss does not
  improve on the best, state carried between batches and reset each epoch.
* ``awd_lstm_ptb`` / ``awd_lstm_wt2``: salesforce/awd-lstm-lm (``main.py`` PTB / WT2 commands): embedding
  dropout, locked dropouts, DropConnect on each layer's ``weight_hh_l0``, one nn.LSTM per layer (the last
  as wide as the embedding), AR/TAR, SGD with weight decay and NT-ASGD (switch to ASGD t0=0 when the held-out
  loss is above the best of all but the last ``nonmono`` epochs; evaluate with the averaged weights), BPTT
  length jittered with the learning rate scaled by it, clip 0.25.
* ``char_rnn``: karpathy/char-rnn ``train.lua``: one-hot input, 2 LSTM layers, Linear + LogSoftMax, every
  parameter U(-0.08, 0.08) and the forget gates' input bias 1, the loss summed over the 50 steps for the
  gradient (its ``grad_params:div(seq_length)`` is left out), each gradient element clamped to +-5,
  RMSprop lr 2e-3 alpha 0.95 eps 1e-8 (torch/optim's, m starting at 0), state carried.
* ``seed_keras``: Keras' defaults for the seed model (two ``LSTM(128, return_sequences=True)``, ``Dense``
  softmax, categorical cross-entropy, ``Adam(1e-3)``): Glorot-uniform kernels, orthogonal recurrent kernels,
  forget bias 1, Adam eps 1e-7, no clipping, and stateless layers (``stateful=False``, Keras' default: each
  window starts from a zero state) over the preset's windows.

Shrunk to fit a small shared CPU, the same for both sides (printed at the start): word level trains on the
first ``--word-train`` tokens of WikiText-2 ``valid.txt`` and scores on the first ``--word-score`` tokens of
``test.txt``, words split on whitespace with ``<eos>`` at line ends (word_language_model's Corpus), the
``--vocab`` most frequent words kept (others ``<unk>``); wlm_medium 2x``--wlm-width`` (650 published), AWD
embeddings ``--awd-emb`` / hidden ``--awd-hidden`` (400 / 1150) and batch 20 (WT2's 80 too); character level
trains on the first ``--char-train`` characters of Tiny Shakespeare and scores on its last 10%, at the
published widths. Epochs: ``--epochs`` (40 to 750 published). Usage::

    OMP_NUM_THREADS=1 python bench/bench_presets.py                         # all five presets, 3 seeds
    OMP_NUM_THREADS=1 python bench/bench_presets.py --presets wlm_medium --seeds 3 --epochs 4
    OMP_NUM_THREADS=1 python bench/bench_presets.py --ours-override model.init=torch --presets wlm_medium

``--ours-override`` adds overrides to the preset (e.g. ``model.init=torch``: the old initialisation).
The last lines, one per preset: ``<preset> ours <x> reference <y> ratio <x/y> (sd ...)``, perplexity at
word level, loss in nats at character level.
"""
from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared_data import shared_data_dir

DATA = shared_data_dir()  # $LSTM_PIPELINE_SHARED_DATA or ../shared/data
WORD = ("wlm_medium", "awd_lstm_ptb", "awd_lstm_wt2")
CHAR = ("char_rnn", "seed_keras")


# -- data --------------------------------------------------------------------------------------------
def word_ids(args) -> tuple[np.ndarray, np.ndarray, int]:
    def words(path: Path) -> list[str]:
        return [w for line in path.read_text(encoding="utf-8").splitlines(keepends=True) for w in line.split() + ["<eos>"]]

    train, score = words(DATA / "wikitext-2/valid.txt")[: args.word_train], words(DATA / "wikitext-2/test.txt")[: args.word_score]
    counts = collections.Counter(train + score)
    vocab = ["<unk>"] + [w for w, _ in counts.most_common() if w != "<unk>"][: args.vocab - 1]
    index = {w: i for i, w in enumerate(vocab)}
    ids = lambda ws: np.asarray([index.get(w, 0) for w in ws], dtype=np.int64)  # noqa: E731
    return ids(train), ids(score), len(vocab)


def char_ids(args) -> tuple[np.ndarray, np.ndarray, int]:
    text = (DATA / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    cut = int(len(text) * 0.9)
    ids = lambda s: np.asarray([index[c] for c in s], dtype=np.int64)  # noqa: E731
    return ids(text[: min(cut, args.char_train)]), ids(text[cut:]), len(vocab)


def batchify(ids: np.ndarray, batch: int) -> torch.Tensor:
    """(N,) -> (N // batch, batch): ``batch`` contiguous streams, time first (word_language_model's)."""
    n = len(ids) // batch
    return torch.from_numpy(ids[: n * batch]).view(batch, n).t().contiguous()


def detach(h):
    return tuple(detach(x) for x in h) if isinstance(h, (tuple, list)) else h.detach()


@torch.no_grad()
def evaluate(model, data: torch.Tensor, bptt: int) -> float:
    """Mean NLL (nats) over the stream batches ``data`` (T, B), state carried across windows: every
    reference is scored as the pipeline scores (the Keras one too, though it trains stateless)."""
    model.eval()
    hidden, total, count = None, 0.0, 0
    for i in range(0, data.size(0) - 1, bptt):
        seq = min(bptt, data.size(0) - 1 - i)
        x, y = data[i:i + seq], data[i + 1:i + 1 + seq]
        logp, hidden = model(x, hidden)
        total += F.nll_loss(logp.reshape(-1, logp.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count


# -- the references --------------------------------------------------------------------------------------
class WLM(nn.Module):
    """pytorch/examples word_language_model's RNNModel (LSTM, tied)."""

    def __init__(self, vocab, emb, hidden, layers, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, layers, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)
        self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return F.log_softmax(self.decoder(self.drop(out)), -1), hidden


def ref_wlm(p, train, score, vocab, args, seed):
    torch.manual_seed(seed)
    model = WLM(vocab, p["emb"], p["hidden"], 2, 0.5)
    data, held = batchify(train, 20), batchify(score, 10)
    lr, best, curve, steps = 20.0, None, [], 0
    for _ in range(args.epochs):
        model.train()
        hidden = None
        for i in range(0, data.size(0) - 1, 35):
            seq = min(35, data.size(0) - 1 - i)
            x, y = data[i:i + seq], data[i + 1:i + 1 + seq]
            hidden = detach(hidden) if hidden is not None else None
            model.zero_grad()
            logp, hidden = model(x, hidden)
            F.nll_loss(logp.view(-1, vocab), y.reshape(-1)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            for prm in model.parameters():
                prm.data.add_(prm.grad, alpha=-lr)
            steps += 1
        val = evaluate(model, held, 35)
        curve.append(val)
        if best is None or val < best:
            best = val
        else:
            lr /= 4.0
    return curve, steps


class AWD(nn.Module):
    """salesforce/awd-lstm-lm's RNNModel (LSTM, tied): per-layer nn.LSTM, the last as wide as the embedding."""

    def __init__(self, vocab, emb, hidden, layers, d):
        super().__init__()
        self.d = d
        self.encoder = nn.Embedding(vocab, emb)
        self.rnns = nn.ModuleList(nn.LSTM(emb if l == 0 else hidden, hidden if l != layers - 1 else emb, 1)
                                  for l in range(layers))
        self.decoder = nn.Linear(emb, vocab)
        self.decoder.weight = self.encoder.weight
        self.encoder.weight.data.uniform_(-0.1, 0.1)
        self.decoder.bias.data.fill_(0)

    @staticmethod
    def lockdrop(x, p, training):  # x (T, B, H): one mask per sequence
        if not training or not p:
            return x
        return x * x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)

    def forward(self, x, hidden, return_h=False):
        d, tr = self.d, self.training
        w = self.encoder.weight
        if tr and d["dropoute"]:
            w = w * w.new_empty(w.size(0), 1).bernoulli_(1 - d["dropoute"]) / (1 - d["dropoute"])
        out = self.lockdrop(F.embedding(x, w), d["dropouti"], tr)
        hidden = hidden or [None] * len(self.rnns)
        new, raws, drops = [], [], []
        for l, rnn in enumerate(self.rnns):
            params = dict(rnn.named_parameters())
            params["weight_hh_l0"] = F.dropout(params["weight_hh_l0"], d["wdrop"], tr)  # WeightDrop
            out, h = torch.func.functional_call(rnn, params, (out, hidden[l]))
            new.append(h)
            raws.append(out)
            if l != len(self.rnns) - 1:
                out = self.lockdrop(out, d["dropouth"], tr)
        out = self.lockdrop(out, d["dropout"], tr)
        logp = F.log_softmax(self.decoder(out), -1)
        return (logp, new, raws[-1], out) if return_h else (logp, new)


def ref_awd(p, train, score, vocab, args, seed):
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    model = AWD(vocab, p["emb"], p["hidden"], 3, p["drops"])
    data, held = batchify(train, p["batch"]), batchify(score, 10)
    opt = torch.optim.SGD(model.parameters(), lr=30.0, weight_decay=1.2e-6)
    bptt, history, curve, steps = 70, [], [], 0
    for _ in range(args.epochs):
        model.train()
        hidden, i = None, 0
        while i < data.size(0) - 1 - 1:
            b = bptt if rng.random_sample() < 0.95 else bptt / 2.0
            seq = max(5, int(rng.normal(b, 5)))
            lr2 = opt.param_groups[0]["lr"]
            opt.param_groups[0]["lr"] = lr2 * seq / bptt
            seq = min(seq, data.size(0) - 1 - i)
            x, y = data[i:i + seq], data[i + 1:i + 1 + seq]
            hidden = detach(hidden) if hidden is not None else None
            opt.zero_grad()
            logp, hidden, raw, dropped = model(x, hidden, return_h=True)
            loss = F.nll_loss(logp.view(-1, vocab), y.reshape(-1))
            loss = loss + 2.0 * dropped.pow(2).mean() + 1.0 * (raw[1:] - raw[:-1]).pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
            opt.param_groups[0]["lr"] = lr2
            i += seq
            steps += 1
        if isinstance(opt, torch.optim.ASGD):
            saved = {q: q.data.clone() for q in model.parameters()}
            for q in model.parameters():
                q.data.copy_(opt.state[q]["ax"])
            val = evaluate(model, held, bptt)
            for q in model.parameters():
                q.data.copy_(saved[q])
        else:
            val = evaluate(model, held, bptt)
            if len(history) > 5 and val > min(history[:-5]):  # NT-ASGD's trigger, nonmono 5
                opt = torch.optim.ASGD(model.parameters(), lr=30.0, t0=0, lambd=0.0, weight_decay=1.2e-6)
        history.append(val)
        curve.append(val)
    return curve, steps


class OneHotLSTM(nn.Module):
    """char-rnn's / the Keras seed model's network: one-hot -> LSTM x2 -> Linear -> log-softmax."""

    def __init__(self, vocab, hidden):
        super().__init__()
        self.vocab = vocab
        self.rnn = nn.LSTM(vocab, hidden, 2)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x, hidden):
        out, hidden = self.rnn(F.one_hot(x, self.vocab).float(), hidden)
        return F.log_softmax(self.decoder(out), -1), hidden


def ref_char_rnn(p, train, score, vocab, args, seed):
    torch.manual_seed(seed)
    model = OneHotLSTM(vocab, 128)
    with torch.no_grad():
        for q in model.parameters():
            q.uniform_(-0.08, 0.08)
        for l in range(2):
            getattr(model.rnn, f"bias_ih_l{l}")[128:256].fill_(1.0)
    opt = torch.optim.RMSprop(model.parameters(), lr=2e-3, alpha=0.95, eps=1e-8)
    data, held = batchify(train, 50), batchify(score, 50)
    hidden, curve, steps = None, [], 0
    for _ in range(args.epochs):
        model.train()
        for i in range(0, data.size(0) - 1 - 50 + 1, 50):  # char-rnn's batches: whole seq_length windows
            x, y = data[i:i + 50], data[i + 1:i + 51]
            hidden = detach(hidden) if hidden is not None else None
            opt.zero_grad()
            logp, hidden = model(x, hidden)
            # sum over time of the batch-mean NLL: the gradient char-rnn clamps
            (F.nll_loss(logp.view(-1, vocab), y.reshape(-1)) * 50).backward()
            for q in model.parameters():
                q.grad.clamp_(-5.0, 5.0)
            opt.step()
            steps += 1
        curve.append(evaluate(model, held, 50))
    return curve, steps


def ref_keras(p, train, score, vocab, args, seed):
    torch.manual_seed(seed)
    model = OneHotLSTM(vocab, 128)
    with torch.no_grad():
        for l in range(2):
            w_ih, w_hh = getattr(model.rnn, f"weight_ih_l{l}"), getattr(model.rnn, f"weight_hh_l{l}")
            lim = math.sqrt(6 / (w_ih.size(0) + w_ih.size(1)))
            w_ih.uniform_(-lim, lim)
            nn.init.orthogonal_(w_hh)
            getattr(model.rnn, f"bias_hh_l{l}").zero_()
            b = getattr(model.rnn, f"bias_ih_l{l}")
            b.zero_()
            b[128:256].fill_(1.0)
        w = model.decoder.weight
        lim = math.sqrt(6 / (w.size(0) + w.size(1)))
        w.uniform_(-lim, lim)
        model.decoder.bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    data, held = batchify(train, p["batch"]), batchify(score, p["eval_batch"])
    bptt, curve, steps = p["bptt"], [], 0
    for _ in range(args.epochs):
        model.train()
        for i in range(0, data.size(0) - 1, bptt):
            seq = min(bptt, data.size(0) - 1 - i)
            x, y = data[i:i + seq], data[i + 1:i + 1 + seq]
            opt.zero_grad()
            logp, _ = model(x, None)  # stateless: every window from a zero state
            F.nll_loss(logp.view(-1, vocab), y.reshape(-1)).backward()
            opt.step()
            steps += 1
        curve.append(evaluate(model, held, bptt))
    return curve, steps


REFERENCES = {"wlm_medium": ref_wlm, "awd_lstm_ptb": ref_awd, "awd_lstm_wt2": ref_awd,
              "char_rnn": ref_char_rnn, "seed_keras": ref_keras}


# -- the preset through the pipeline ------------------------------------------------------------------
def shrink(preset: str, args) -> tuple[dict, list[str]]:
    """The shrunk sizes (for the reference) and the same as overrides of the preset (for ours)."""
    if preset == "wlm_medium":
        w = args.wlm_width
        return {"emb": w, "hidden": w}, [f"model.embedding_dim={w}", f"model.hidden_size={w}"]
    if preset.startswith("awd"):
        drops = {"awd_lstm_ptb": dict(dropout=0.4, dropouth=0.25, dropouti=0.4, dropoute=0.1, wdrop=0.5),
                 "awd_lstm_wt2": dict(dropout=0.4, dropouth=0.2, dropouti=0.65, dropoute=0.1, wdrop=0.5)}[preset]
        return ({"emb": args.awd_emb, "hidden": args.awd_hidden, "batch": 20, "drops": drops},
                [f"model.embedding_dim={args.awd_emb}", f"model.hidden_size={args.awd_hidden}", "batching.batch_size=20"])
    return {}, []


def ours(preset, overrides, train, score, vocab, args, seed):
    import lightning as L

    from lstm_pipeline.api import compose_train
    from lstm_pipeline.config.schema import to_dict
    from lstm_pipeline.data.datamodule import StreamDataModule
    from lstm_pipeline.data.pipeline import Corpus
    from lstm_pipeline.training.module import LanguageModelTask
    from lstm_pipeline.training.run_callbacks import batching_callbacks

    cfg, _ = compose_train([f"experiment={preset}", f"seed={seed}", *overrides], run_dir="/tmp/unused")
    torch.manual_seed(seed)
    np.random.seed(seed)
    task = LanguageModelTask(model=to_dict(cfg.model), vocab_size=vocab, optim=to_dict(cfg.optim),
                             scheduler=to_dict(cfg.scheduler))
    corpus = Corpus(tokenizer=None, ids={"train": train, "validation": score, "test": score})
    dm = StreamDataModule(corpus, **to_dict(cfg.batching))
    curve, steps = [], []

    class Record(L.Callback):
        def on_validation_end(self, trainer, module):  # after the module logged val_loss
            curve.append(float(trainer.callback_metrics["val_loss"]))
            steps.append(trainer.global_step)

    trainer_cfg = {**to_dict(cfg.trainer), "max_epochs": args.epochs, "max_steps": -1, "val_check_interval": 1.0,
                   "check_val_every_n_epoch": 1, "num_sanity_val_steps": 0, "logger": False,
                   "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                   "accelerator": "cpu", "devices": 1}
    trainer = L.Trainer(**trainer_cfg, callbacks=[*batching_callbacks(to_dict(cfg.batching)), Record()], use_distributed_sampler=False)
    trainer.fit(task, datamodule=dm)
    return curve, steps[-1] if steps else 0


def preset_sizes(preset: str, args) -> dict:
    """Batching of the preset (for the Keras reference, which runs over the preset's windows)."""
    from lstm_pipeline.api import compose_train

    cfg, _ = compose_train([f"experiment={preset}"], run_dir="/tmp/unused")
    return {"batch": cfg.batching.batch_size, "bptt": cfg.batching.bptt, "eval_batch": cfg.batching.eval_batch_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=[*CHAR, *WORD], choices=[*CHAR, *WORD])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--word-train", type=int, default=70_000, help="tokens of valid.txt trained on")
    ap.add_argument("--word-score", type=int, default=40_000, help="tokens of test.txt scored")
    ap.add_argument("--char-train", type=int, default=200_000, help="characters of Tiny Shakespeare trained on")
    ap.add_argument("--wlm-width", type=int, default=200)
    ap.add_argument("--awd-emb", type=int, default=100)
    ap.add_argument("--awd-hidden", type=int, default=300)
    ap.add_argument("--ours-override", nargs="*", default=[], help="extra overrides of the preset for ours")
    ap.add_argument("--sides", nargs="+", default=["reference", "ours"], choices=["reference", "ours"],
                    help="run only one side (the reference's figures do not depend on --ours-override)")
    ap.add_argument("--ours-dropout", choices=["package", "bernoulli"], default="package",
                    help="diagnostic: bernoulli makes the package's dropout masks F.dropout's (bernoulli_)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.ours_dropout == "bernoulli":
        import lstm_pipeline.models.dropout as package_dropout

        package_dropout.dropout = lambda x, p, training=True: F.dropout(x, p, training)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}; "
          f"{args.epochs} epochs, {args.seeds} seeds; word: {args.word_train} train / {args.word_score} scored tokens, "
          f"vocab {args.vocab}, wlm 2x{args.wlm_width}, awd {args.awd_emb}/{args.awd_hidden} batch 20; char: "
          f"{args.char_train} train chars, last 10% scored; ours extra: {' '.join(args.ours_override) or '-'}"
          f"{'; ours with bernoulli dropout masks' if args.ours_dropout == 'bernoulli' else ''}", flush=True)
    data = {}
    summary = []
    for preset in args.presets:
        level = "word" if preset in WORD else "char"
        if level not in data:
            data[level] = word_ids(args) if level == "word" else char_ids(args)
        train, score, vocab = data[level]
        sizes, overrides = shrink(preset, args)
        if preset == "seed_keras":
            sizes = preset_sizes(preset, args)
        runs = {"ours": [], "reference": []}
        for seed in range(args.seeds):
            for side in args.sides:
                t0 = time.perf_counter()
                if side == "ours":
                    curve, steps = ours(preset, overrides + list(args.ours_override), train, score, vocab, args, seed)
                else:
                    curve, steps = REFERENCES[preset](sizes, train, score, vocab, args, seed)
                runs[side].append(curve)
                show = [f"{math.exp(v):.1f}" if level == "word" else f"{v:.4f}" for v in curve]
                print(f"{preset:13s} seed {seed} {side:9s} {steps:5d} steps {time.perf_counter() - t0:6.1f} s  "
                      f"{'ppl' if level == 'word' else 'nats'} per epoch {' / '.join(show)}  "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
        runs = {side: curves for side, curves in runs.items() if curves}
        final = {side: [c[-1] for c in curves] for side, curves in runs.items()}
        metric = (lambda v: math.exp(v)) if level == "word" else (lambda v: v)  # noqa: E731
        m = {s: statistics.mean(metric(v) for v in vals) for s, vals in final.items()}
        sd = {s: statistics.stdev([metric(v) for v in vals]) if len(vals) > 1 else float("nan") for s, vals in final.items()}
        per_epoch = {s: [statistics.mean(metric(c[e]) for c in curves) for e in range(args.epochs)]
                     for s, curves in runs.items()}
        summary.append((preset, level, m, sd, per_epoch))
    print(f"\nmean over seeds, per epoch (load average {os.getloadavg()[0]:.2f}):")
    for preset, level, m, sd, per_epoch in summary:
        for side in per_epoch:
            print(f"  {preset:13s} {side:9s} " + " / ".join(f"{v:.4g}" for v in per_epoch[side]))
    print()
    for preset, level, m, sd, per_epoch in summary:
        if len(m) < 2:
            continue
        unit = "ppl" if level == "word" else "nats"
        print(f"{preset} ours {m['ours']:.4g} reference {m['reference']:.4g} ratio {m['ours'] / m['reference']:.3f} "
              f"({unit}; sd ours {sd['ours']:.3g}, reference {sd['reference']:.3g})")


if __name__ == "__main__":
    main()
