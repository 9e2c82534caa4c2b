"""Encoding: exact ids, compact memory-mapped storage, and the fingerprint cache (a second run
does no tokenisation work)."""
import datasets
import numpy as np
import pytest

from lstm_pipeline.data.pipeline import id_dtype, prepare_corpus
from lstm_pipeline.tokenization import base
from lstm_pipeline.tokenization.bpe import BPETokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "hf_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", d)
    return d


def test_encoded_ids_equal_the_tokenizer_on_the_text(cache, tiny_corpus):
    c = prepare_corpus({"name": "text", "path": str(tiny_corpus)}, {"name": "bpe", "vocab_size": 200})
    text = tiny_corpus.read_text()
    lines = text.splitlines(keepends=True)
    n_val, n_test = round(len(lines) * 0.05), round(len(lines) * 0.05)
    n_train = len(lines) - n_val - n_test
    expect = [i for line in lines[:n_train] for i in c.tokenizer.encode(line)]
    assert isinstance(c.ids["train"], np.memmap) and c.ids["train"].dtype == np.uint16
    assert c.ids["train"].tolist() == expect
    assert c.num_chars["test"] == sum(map(len, lines[n_train + n_val:]))
    # trained on the train split only: a tokenizer trained on the train lines alone is identical
    ref = BPETokenizer(vocab_size=200).train(iter(lines[:n_train]))
    assert ref.to_str() == c.tokenizer.tk.to_str()


def test_second_run_does_no_tokenisation_work(cache, tiny_corpus, monkeypatch):
    cfg = ({"name": "text", "path": str(tiny_corpus)}, {"name": "byte_bpe", "vocab_size": 400})
    first = prepare_corpus(*cfg)
    calls = {"encode": 0, "train": 0}
    real_encode = base.TextTokenizer.encode_batch

    def counting_encode(self, texts):
        calls["encode"] += 1
        return real_encode(self, texts)

    monkeypatch.setattr(base.TextTokenizer, "encode_batch", counting_encode)
    from lstm_pipeline.tokenization.byte_bpe import ByteBPETokenizer
    real_bb = ByteBPETokenizer.train

    def counting_train(self, texts):
        calls["train"] += 1
        return real_bb(self, texts)

    monkeypatch.setattr(ByteBPETokenizer, "train", counting_train)
    second = prepare_corpus(*cfg)
    assert calls == {"encode": 0, "train": 0}
    for split in first.ids:
        assert second.ids[split].filename == first.ids[split].filename  # the same cache file, memory-mapped
        assert np.array_equal(second.ids[split], first.ids[split])
    assert second.num_chars == first.num_chars
    # other data -> other fingerprint -> work is done again
    other = tiny_corpus.parent / "other.txt"
    other.write_text(tiny_corpus.read_text()[:8000] + "x")
    prepare_corpus({"name": "text", "path": str(other)}, cfg[1])
    assert calls["encode"] > 0 and calls["train"] == 1


def test_num_proc_gives_the_same_ids(cache, tiny_corpus, tmp_path, monkeypatch):
    """Two encoding processes give the ids and document offsets of one (separate caches, so the
    second run cannot just read the first one's result)."""
    src = {"name": "text", "path": str(tiny_corpus)}
    one = prepare_corpus(src, {"name": "word"})
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "other-cache")
    two = prepare_corpus({**src, "num_proc": 2}, {"name": "word"})
    assert len(two.ids["train"]) > 0
    for split in one.ids:
        assert np.array_equal(one.ids[split], two.ids[split])
        assert np.array_equal(one.doc_offsets[split], two.doc_offsets[split])
    ref = two.tokenizer.encode_batch(open(tiny_corpus).read().splitlines(keepends=True))
    n = len(two.doc_offsets["train"]) - 1
    assert two.ids["train"].tolist() == [i for row in ref[:n] for i in row]
    char = prepare_corpus(src, {"name": "char"})
    assert char.ids["train"].dtype == np.uint16


def test_dtype_is_compact():
    assert id_dtype(256) == np.uint16 and id_dtype(65536) == np.uint16 and id_dtype(65537) == np.int32


@pytest.mark.parametrize("change", ["same size", "other size"])
def test_changed_content_with_restored_mtime_is_prepared_again(cache, tmp_path, change):
    """The cache key is the files' content (size + a streaming hash), not path and mtime: a file
    replaced under the same name and mtime (``touch -r``, ``os.utime``, a restore from backup) is
    read, tokenised and encoded again."""
    import os

    path = tmp_path / "corpus.txt"
    path.write_text("abc abc abc\n" * 200)
    stat = path.stat()
    cfg = ({"name": "text", "path": str(path)}, {"name": "char"})
    first = prepare_corpus(*cfg)
    new = ("xyz xyz xyz\n" if change == "same size" else "xyz qrs tuv w\n") * 200
    path.write_text(new)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    second = prepare_corpus(*cfg)
    vocab = set(second.tokenizer.tk.get_vocab())
    assert {"x", "y", "z"} <= vocab and not ({"a", "b", "c"} & vocab)
    assert second.tokenizer.decode(second.ids["train"][:12].tolist()) == new[:12]
    # unchanged content: the cache is used again (same .bin file)
    third = prepare_corpus(*cfg)
    assert third.ids["train"].filename == second.ids["train"].filename
