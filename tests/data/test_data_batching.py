"""Batching modes: stream (per-rank contiguous shards), variable BPTT, random windows,
documents with state resets, streaming shards; exact resume of every deterministic mode."""
import json

import numpy as np
import pytest
import torch

from lstm_pipeline.data.batching import (IGNORE_INDEX, DocumentBatches, RandomWindows, StreamBatches,
                                         pack_documents, vbptt_lengths)
from lstm_pipeline.data.resets import forward_with_resets
from lstm_pipeline.data.sources import DataError
from lstm_pipeline.models.lm import RecurrentLM

IDS = np.arange(1003, dtype=np.uint16) % 997


def collect(ds):
    return list(iter(ds))


def test_stream_ranks_get_disjoint_contiguous_shards():
    B, T, world = 3, 7, 2
    shards = []
    for rank in range(world):
        batches = collect(StreamBatches(IDS, B, T, rank, world))
        x = torch.cat([b[0] for b in batches], 1)  # (B, stream_len): row b of every window, in order
        y = torch.cat([b[1] for b in batches], 1)
        assert torch.equal(x[:, 1:], y[:, :-1])  # the next window continues the row: state can be carried
        shards.append(x)
    stream_len = (len(IDS) - 1) // (B * world)
    rows = torch.cat(shards, 0)  # (world * B, stream_len)
    # rank r owns streams r*B..(r+1)*B; together they are the corpus, in order, without overlap
    assert torch.equal(rows.reshape(-1), torch.from_numpy(IDS[: B * world * stream_len].astype(np.int64)))


def test_stream_resume_continues_at_the_next_window():
    full = collect(StreamBatches(IDS, 4, 10))
    ds = StreamBatches(IDS, 4, 10)
    ds.start = 5
    rest = collect(ds)
    assert len(rest) == len(full) - 5 and all(torch.equal(a[0], b[0]) for a, b in zip(rest, full[5:]))


def test_variable_bptt_lengths_follow_awd_lstm():
    rng = np.random.default_rng(0)
    lengths = vbptt_lengths(100000, 70, rng)
    assert sum(lengths) == 100000 and min(lengths[:-1]) >= 5 and max(lengths) <= 80
    full = [n for n in lengths[:-1] if n > 52]
    assert 0.93 < len(full) / len(lengths[:-1]) < 0.97  # p = 0.95 around bptt, else around bptt / 2
    assert abs(np.mean(full) - 70) < 1.0 and abs(np.std([n for n in full if n < 80]) - 5) < 1.5
    # a schedule drives the windows and still covers every stream exactly
    sched = vbptt_lengths((len(IDS) - 1) // 4, 20, np.random.default_rng(1))
    batches = collect(StreamBatches(IDS, 4, 20, lengths=sched))
    assert [b[0].shape[1] for b in batches] == sched
    assert torch.equal(torch.cat([b[0] for b in batches], 1)[:, 1:], torch.cat([b[1] for b in batches], 1)[:, :-1])


def test_random_windows_are_seeded_true_slices_and_resume_exactly():
    ds = RandomWindows(IDS, 4, 16, seed=3)
    a, b = collect(ds), collect(RandomWindows(IDS, 4, 16, seed=3))
    assert len(a) == (len(IDS) - 1) // 64
    for (x, y, reset), (x2, _, _) in zip(a, b):
        assert torch.equal(x, x2)
        assert torch.equal(x[:, 1:], y[:, :-1]) and reset[:, 0].all() and not reset[:, 1:].any()
        for row in x:  # each row is a contiguous slice of the corpus
            start = int(np.flatnonzero(IDS == row[0].item())[0])
            assert row.tolist() == IDS[start: start + 16].tolist()
    other = collect(RandomWindows(IDS, 4, 16, seed=4))
    assert not torch.equal(a[0][0], other[0][0])
    ds.start = 3
    assert all(torch.equal(p[0], q[0]) for p, q in zip(collect(ds), a[3:]))
    r1 = collect(RandomWindows(IDS, 4, 16, rank=1, world_size=2, seed=3))
    assert not torch.equal(r1[0][0], a[0][0]) and len(r1) == (len(IDS) - 1) // 128
    epoch1 = collect(RandomWindows(IDS, 4, 16, seed=3, epoch=lambda: 1))
    assert not torch.equal(epoch1[0][0], a[0][0])


DOCS = [list(range(100 + 10 * d, 100 + 10 * d + n)) for d, n in enumerate([5, 9, 3, 12, 7, 4, 6, 8])]


def doc_stream():
    ids = np.array([t for d in DOCS for t in d], dtype=np.uint16)
    offsets = np.cumsum([0] + [len(d) for d in DOCS])
    return ids, offsets


@pytest.mark.parametrize("align", [False, True])
def test_documents_are_packed_whole_with_resets_and_no_cross_document_targets(align):
    ids, offsets = doc_stream()
    found = []
    for rank in range(2):
        batches = collect(DocumentBatches(ids, offsets, 2, 5, rank, 2, pad_id=0, align=align))
        if align:  # documents start at window boundaries only
            assert all(not b[2][:, 1:].any() for b in batches)
        x = torch.cat([b[0] for b in batches], 1)
        y = torch.cat([b[1] for b in batches], 1)
        reset = torch.cat([b[2] for b in batches], 1)
        for row in range(2):
            starts = torch.nonzero(reset[row]).flatten().tolist() + [None]
            for a, b in zip(starts[:-1], starts[1:]):
                seg_x = x[row, a:b].tolist()
                seg_y = y[row, a:b].tolist()
                doc = [t for t in seg_x if t != 0]  # padding (pad_id 0; document ids are >= 100) ends a row
                assert seg_x[len(doc):] == [0] * (len(seg_x) - len(doc))
                assert all(t == IGNORE_INDEX for t in seg_y[len(doc):])
                assert doc in DOCS
                assert seg_y[: len(doc) - 1] == doc[1:] and seg_y[len(doc) - 1] == IGNORE_INDEX
                found.append(doc)
    assert sorted(found) == sorted(DOCS)  # every document exactly once, whole, on one rank


def packed_reference(ids, offsets, batch_size, bptt, rank, world_size, pad_id, align, start_id=None):
    """The packing written out eagerly: the whole (B, W) layout of this rank in RAM (each non-empty
    document after ``start_id``, when given)."""
    lengths = np.diff(offsets)
    if start_id is not None:
        lengths = lengths + (lengths > 0)
    span = (-(-lengths // bptt) * bptt) if align else lengths
    rows = pack_documents(span, batch_size * world_size)
    width = max(int(span[r].sum()) for r in rows)
    x = np.full((batch_size, width), pad_id, dtype=np.int64)
    y = np.full((batch_size, width), IGNORE_INDEX, dtype=np.int64)
    reset = np.zeros((batch_size, width), dtype=bool)
    for b, docs in enumerate(rows[rank * batch_size: (rank + 1) * batch_size]):
        pos = 0
        for d in docs:
            tokens = np.asarray(ids[offsets[d]: offsets[d + 1]], dtype=np.int64)
            if start_id is not None and len(tokens):
                tokens = np.concatenate([[start_id], tokens])
            x[b, pos: pos + len(tokens)] = tokens
            y[b, pos: pos + len(tokens) - 1] = tokens[1:]
            reset[b, pos] = True
            pos += int(span[d])
    return [tuple(torch.from_numpy(a[:, i: i + bptt]) for a in (x, y, reset)) for i in range(0, width, bptt)]


@pytest.mark.parametrize("start_id", [None, 7])
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("bptt", [1, 3, 7, 40])
def test_document_windows_read_lazily_equal_the_packed_layout(tmp_path, align, bptt, start_id):
    rng = np.random.default_rng(bptt)
    lengths = rng.integers(0, 30, size=60)  # some empty documents too
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    path = tmp_path / "ids.bin"
    rng.integers(1, 60000, size=int(offsets[-1])).astype(np.uint16).tofile(path)
    ids = np.memmap(path, dtype=np.uint16, mode="r")
    for rank in range(2):
        got = collect(DocumentBatches(ids, offsets, 3, bptt, rank, 2, pad_id=0, align=align, start_id=start_id))
        ref = packed_reference(ids, offsets, 3, bptt, rank, 2, 0, align, start_id)
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(g, r))


def test_with_an_end_of_text_token_every_document_is_read_after_it():
    """From the reset state the model reads the end-of-text token and predicts each document's first
    token: the state an empty prompt starts from in generation."""
    ids, offsets = doc_stream()
    eos = 7
    x, y, reset = (torch.cat(t, 1) for t in zip(*collect(DocumentBatches(ids, offsets, 4, 6, start_id=eos))))
    for row in range(4):
        starts = torch.nonzero(reset[row]).flatten().tolist()
        for a in starts:
            assert int(x[row, a]) == eos and [int(y[row, a])] == [int(t) for t in x[row, a + 1: a + 2]]
    firsts = sorted(int(y[r, a]) for r in range(4) for a in torch.nonzero(reset[r]).flatten().tolist())
    assert firsts == sorted(d[0] for d in DOCS)


def test_forward_with_resets_equals_running_each_document_from_the_zero_state():
    torch.manual_seed(0)
    model = RecurrentLM(300, embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.0, cell={"name": "lstm"}).eval()
    ids, offsets = doc_stream()
    ds = DocumentBatches(ids, offsets, 2, 4, pad_id=0)
    state, got, xs, resets = None, [], [], []
    with torch.no_grad():
        for x, y, reset in ds:
            logits, state = forward_with_resets(model, x, state, reset)
            got.append(logits), xs.append(x), resets.append(reset)
        logits, inputs, reset = torch.cat(got, 1), torch.cat(xs, 1), torch.cat(resets, 1)  # (B, W, V), (B, W) x2
        for row in range(2):
            starts = torch.nonzero(reset[row]).flatten().tolist()
            for a in starts:
                doc = next(d for d in DOCS if d[0] == inputs[row, a])
                ref, _ = model(torch.tensor([doc]), None)
                torch.testing.assert_close(logits[row, a: a + len(doc)], ref[0], rtol=1e-5, atol=1e-5)
        # no reset: exactly one plain call
        x = torch.tensor([DOCS[3][:6]])
        s0 = model(x[:, :2], None)[1]
        torch.testing.assert_close(forward_with_resets(model, x, s0, torch.zeros_like(x, dtype=torch.bool))[0],
                                   model(x, s0)[0])


def test_a_stream_shorter_than_one_batch_is_an_error():
    with pytest.raises(DataError, match=r"The train split has 10 tokens: too short for 16 streams"):
        StreamBatches(IDS[:10], 8, 4, world_size=2)
    with pytest.raises(DataError, match=r"shorter than one batch.*bptt"):
        RandomWindows(IDS[:10], 2, 16)
    ids, offsets = doc_stream()
    with pytest.raises(DataError, match=r"8 non-empty documents: fewer than one per row"):
        DocumentBatches(ids, offsets, 8, 4, world_size=2)


def test_streaming_ranks_get_disjoint_shards(tmp_path):
    import datasets

    from lstm_pipeline.data.streaming import StreamingBatches
    from lstm_pipeline.tokenization.base import TextTokenizer
    from lstm_pipeline.tokenization.word import WordTokenizer

    words = [f"w{i}" for i in range(400)]
    for f in range(2):  # two files: split_dataset_by_node gives each rank whole files
        (tmp_path / f"part{f}.jsonl").write_text("".join(json.dumps({"text": w}) + "\n" for w in words[f * 200:(f + 1) * 200]))
    ds = datasets.load_dataset("json", data_files=sorted(map(str, tmp_path.glob("*.jsonl"))), split="train",
                               streaming=True)
    tk = TextTokenizer(WordTokenizer(special_tokens=["<eos>"]).train(iter(words)))
    seen = []
    for rank in range(2):
        toks = set()
        for x, y in StreamingBatches(ds, tk, "text", 2, 5, rank, 2, eos_token="<eos>"):
            assert torch.equal(x[:, 1:], y[:, :-1])
            toks |= set(x.flatten().tolist()) | set(y.flatten().tolist())
        seen.append({tk.tk.id_to_token(i) for i in toks} - {"<eos>"})
    assert seen[0].isdisjoint(seen[1])
    assert len(seen[0] | seen[1]) > 380  # everything but the tail of each shard that does not fill a batch
    with pytest.raises(DataError, match="shorter than one batch.*Lower batching.batch_size / batching.bptt"):
        list(StreamingBatches(ds.take(3), tk, "text", 2, 5))
    with pytest.raises(DataError, match="Lower batching.eval_batch_size / batching.bptt.*data.val_count"):
        list(StreamingBatches(ds.take(3), tk, "text", 2, 5, split="validation"))


def test_variable_bptt_callback_scales_lr_by_window_length_in_a_real_trainer():
    import lightning as L
    from torch.utils.data import DataLoader

    from lstm_pipeline.data.vbptt import VariableBPTTScaler

    sched = [20, 10, 25, 20]
    ds = StreamBatches(IDS, 2, 20, lengths=sched + [(len(IDS) - 1) // 2 - sum(sched)])

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def training_step(self, batch, i):
            self.seen.append((batch[0].size(1), self.optimizers().param_groups[0]["lr"]))
            return (self.w * batch[0].float().mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    probe = Probe()
    trainer = L.Trainer(max_steps=4, callbacks=[VariableBPTTScaler(20)], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(probe, DataLoader(ds, batch_size=None))
    assert probe.seen == [(t, 0.5 * t / 20) for t in sched]
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.5  # restored after every step


def test_dataloader_workers_share_the_windows_and_resume_once():
    """Two DataLoader workers give exactly the windows of one process, in the same order; a resume
    offset skips windows in the first epoch only."""
    from lstm_pipeline.data.batching import DocumentBatches, RandomWindows, StreamBatches
    from lstm_pipeline.data.datamodule import _ResumeOnceLoader

    ids = np.arange(1000, dtype=np.int32) % 97
    for make in (lambda: StreamBatches(ids, 3, 7), lambda: RandomWindows(ids, 3, 7, seed=1),
                 lambda: DocumentBatches(ids, np.arange(0, 1001, 50), 3, 7)):
        one = [tuple(t.tolist() for t in b) for b in _ResumeOnceLoader(make(), batch_size=None)]
        ds = make()
        ds.start = 4
        loader = _ResumeOnceLoader(ds, batch_size=None, num_workers=2)
        first = [tuple(t.tolist() for t in b) for b in loader]
        second = [tuple(t.tolist() for t in b) for b in loader]
        assert first == one[4:] and second == one
