"""Every registered tokenizer: training on real text, round trips, special tokens, bad input."""
import json
import os

import pytest

from helpers import SHARED_DATA, SHARED_DATA_ENV

from lstm_pipeline.data.sources import bundled_corpus
from lstm_pipeline.registry import TOKENIZERS
from lstm_pipeline.tokenization.base import TextTokenizer
from lstm_pipeline.tokenization.common import VocabularyTooLargeError
from lstm_pipeline.training.train import bos_token_id

TEXT = bundled_corpus().read_text()[:60000]
LINES = TEXT.splitlines(keepends=True)
# text whose every character occurs in the training text, with awkward spacing
SEEN = "ROMEO:\n  Is the day so young?  \n\nJULIET: Ay, my lord;   be\tgone!\n" .replace("\t", " ")
UNSEEN = "naïve café — 東京 😀\x00\tend"

CONFIGS = {
    "char": {},
    "byte": {},
    "bpe": {"vocab_size": 300},
    "byte_bpe": {"vocab_size": 400},
    "wordpiece": {"vocab_size": 300},
    "unigram": {"vocab_size": 300},
    "word": {"vocab_size": 500},
}


_TRAINED = {}


def train(name, **kw):
    """Train once per configuration (the tests only read the result)."""
    key = (name, tuple(sorted(kw.items())))
    if key not in _TRAINED:
        factory = TOKENIZERS.build({"name": name, **CONFIGS.get(name, {}), **kw})
        _TRAINED[key] = factory, TextTokenizer(factory.train(iter(LINES)))
    return _TRAINED[key]


def test_all_tokenizers_are_registered():
    assert set(CONFIGS) | {"pretrained"} <= set(TOKENIZERS.names())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_of_lossless_tokenizers(name):
    factory, tk = train(name)
    assert isinstance(type(factory).lossless, bool)
    if not factory.lossless:
        pytest.skip(f"{name} is lossy by design")
    for text in (SEEN, TEXT[:5000], ""):
        assert tk.decode(tk.encode(text)) == text
    if name in ("byte", "byte_bpe"):  # never unknown: any text round-trips
        assert tk.decode(tk.encode(UNSEEN)) == UNSEEN


@pytest.mark.parametrize("name", ["word", "wordpiece"])
def test_lossy_tokenizers_keep_the_words(name):
    factory, tk = train(name)
    assert factory.lossless is False
    text = "and the of to"
    assert tk.decode(tk.encode(text)).split() == text.split()


def test_byte_ids_are_the_utf8_bytes_and_specials_follow():
    _, tk = train("byte")
    assert tk.encode(UNSEEN) == list(UNSEEN.encode("utf-8"))
    assert tk.vocab_size == 258 and tk.token_to_id("<eos>") == 256 and tk.token_to_id("<pad>") == 257
    assert tk.encode("a<eos>b") == [97, 256, 98]  # special tokens are matched in the text


@pytest.mark.parametrize("name", ["bpe", "byte_bpe", "wordpiece", "unigram", "word"])
def test_vocab_size_and_special_tokens(name):
    _, tk = train(name)
    assert tk.vocab_size == CONFIGS[name]["vocab_size"]
    for special in ("<eos>", "<pad>"):
        assert tk.token_to_id(special) is not None
        assert tk.encode(f"x {special} y").count(tk.token_to_id(special)) == 1


def test_word_tokenizer_keeps_the_most_frequent_words_or_min_frequency():
    from collections import Counter

    counts = Counter(TEXT.split())
    _, tk = train("word", vocab_size=53)  # <unk>, <eos>, <pad> + 50 words
    vocab = set(tk.tk.get_vocab()) - {"<unk>", "<eos>", "<pad>"}
    assert len(vocab) == 50
    assert min(counts[w] for w in vocab) >= counts.most_common(50)[-1][1]
    rare = min(counts, key=counts.get)
    assert tk.encode(f"the {rare}") == [tk.token_to_id("the"), tk.token_to_id("<unk>")]
    _, tk = train("word", vocab_size=None, min_frequency=20)
    assert set(tk.tk.get_vocab()) - {"<unk>", "<eos>", "<pad>"} == {w for w, c in counts.items() if c >= 20}



def _word_text_with_literal_specials(n_words):
    """Words w00, w01, ... seen n_words, n_words - 1, ... times, with "<unk>" and "<eos>" (as PTB and
    WikiText write them) the most frequent of all."""
    words = [f"w{i:02d}" for i in range(n_words) for _ in range(n_words - i)]
    return [" ".join(words[i: i + 7]) + " <unk> <eos> <unk>\n" for i in range(0, len(words), 7)]


def _ids_are_compact(tk):
    return sorted(tk.tk.get_vocab().values()) == list(range(tk.vocab_size))


def test_word_vocab_size_is_exact_when_special_tokens_occur_as_words():
    factory = TOKENIZERS.build({"name": "word", "vocab_size": 13})
    tk = TextTokenizer(factory.train(iter(_word_text_with_literal_specials(20))))
    assert tk.vocab_size == 13 and _ids_are_compact(tk)
    assert set(tk.tk.get_vocab()) == {"<unk>", "<eos>", "<pad>", *(f"w{i:02d}" for i in range(10))}
    unk = tk.token_to_id("<unk>")
    assert tk.encode("<unk>") == [unk] and tk.encode("w19 w00") == [unk, tk.token_to_id("w00")]
    assert tk.encode("w00 <eos>") == [tk.token_to_id("w00"), tk.token_to_id("<eos>")]
    # without a vocab_size every word is kept, the special tokens once each, with ids 0 .. size - 1
    tk = TextTokenizer(TOKENIZERS.build({"name": "word"}).train(iter(["a a a b b <unk>\n"])))
    assert tk.vocab_size == 5 and _ids_are_compact(tk) and tk.encode("<unk> c") == [tk.token_to_id("<unk>")] * 2


WIKITEXT2_VALID = SHARED_DATA / "wikitext-2" / "valid.txt"


@pytest.mark.skipif(not WIKITEXT2_VALID.is_file(), reason=f"WikiText-2 is not at {WIKITEXT2_VALID} (set {SHARED_DATA_ENV})")
def test_word_vocab_size_on_wikitext_which_writes_unk_as_a_word():
    with open(WIKITEXT2_VALID, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(2000), f)]
    assert any("<unk>" in line.split() for line in lines)
    tk = TextTokenizer(TOKENIZERS.build({"name": "word", "vocab_size": 1000}).train(iter(lines)))
    assert tk.vocab_size == 1000 and _ids_are_compact(tk)
    assert tk.encode("<unk> the") == [tk.token_to_id("<unk>"), tk.token_to_id("the")]


def test_word_vocabulary_too_large_reports_the_true_count_when_special_tokens_occur_as_words():
    lines = _word_text_with_literal_specials(8)  # <unk>, <eos>, <pad> + 8 words: 11 tokens
    tk = TextTokenizer(TOKENIZERS.build({"name": "word", "vocab_size": 11}).train(iter(lines)))
    assert tk.vocab_size == 11 and _ids_are_compact(tk)
    with pytest.raises(VocabularyTooLargeError, match=r"vocab_size=12 is larger than the train split allows: "
                                                      r"training found only 11 tokens"):
        TOKENIZERS.build({"name": "word", "vocab_size": 12}).train(iter(lines))


def test_char_unknown_policy():
    _, tk = train("char")
    assert tk.decode(tk.encode("a😀b")) == "a<unk>b"
    _, tk = train("char", on_unknown="drop")
    assert tk.decode(tk.encode("a😀b")) == "ab"
    with pytest.raises(ValueError, match="on_unknown"):
        train("char", on_unknown="ignore")


def test_normalisation_options_make_the_tokenizer_lossy():
    factory, tk = train("bpe", lowercase=True, normalization="NFKC")
    assert factory.lossless is False
    assert tk.encode("ROMEO ﬁ") == tk.encode("romeo fi")
    with pytest.raises(ValueError, match="NFC, NFD, NFKC, NFKD"):
        train("bpe", normalization="NFX")


@pytest.mark.parametrize("name,size", [("bpe", 100000), ("word", 100000), ("wordpiece", 100000)])
def test_vocabulary_larger_than_the_corpus_allows_is_an_error(name, size):
    with pytest.raises(VocabularyTooLargeError, match=rf"vocab_size={size} is larger than the train split allows: "
                                                      r"training found only \d+ tokens"):
        train(name, vocab_size=size)


def test_pretrained_loads_any_tokenizer_json(tmp_path):
    _, tk = train("byte_bpe")
    tk.save(tmp_path / "tokenizer.json")
    factory = TOKENIZERS.build({"name": "pretrained", "path": str(tmp_path), "lossless": True})
    assert factory.needs_training is False
    loaded = TextTokenizer(factory.train(None))
    assert loaded.encode(TEXT[:3000]) == tk.encode(TEXT[:3000])
    with pytest.raises(FileNotFoundError, match="nope'? does not exist"):
        TOKENIZERS.build({"name": "pretrained", "path": str(tmp_path / "nope")}).train(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is a directory without a tokenizer.json"):
        TOKENIZERS.build({"name": "pretrained", "path": str(tmp_path / "empty")}).train(None)


@pytest.mark.parametrize("name,expected", [("char", "\n"), ("byte", "Ċ"), ("byte_bpe", "Ċ"), ("bpe", "\n"),
                                           ("unigram", "\n"), ("word", "<eos>"), ("wordpiece", "<eos>")])
def test_bos_token_is_sensible_for_every_tokenizer(name, expected):
    _, tk = train(name)
    assert bos_token_id(tk) == tk.token_to_id(expected)


@pytest.mark.parametrize("settings", [{}, {"max_alphabet": 30}, {"lowercase": True, "special_tokens": ["<eos>"]},
                                      {"on_unknown": "drop"}, {"normalization": "NFKC"}])
def test_char_vocabulary_equals_the_bpe_trainers(settings):
    """The char tokenizer counts characters as the text streams past (memory: the alphabet's) and
    builds the vocabulary ``tokenizers``' BpeTrainer(vocab_size=1) learns from the same rows
    (which keeps every distinct row: 1.9 GB for a 50 MB corpus): the same tokenizer.json."""
    from tokenizers import decoders, models, trainers

    from lstm_pipeline.tokenization.char import CharTokenizer

    rows = (TEXT + "Ünïcödé ﬁ\n").splitlines(True)
    factory = CharTokenizer(**settings)
    reference = factory.new(models.BPE(unk_token=factory.unk_token))
    reference.decoder = decoders.Fuse()
    kwargs = {"limit_alphabet": factory.max_alphabet} if factory.max_alphabet else {}
    reference.train_from_iterator(rows, trainer=trainers.BpeTrainer(
        vocab_size=1, special_tokens=factory.all_special_tokens(), show_progress=False, **kwargs))
    assert json.loads(factory.train(iter(rows)).to_str()) == json.loads(reference.to_str())
    batches = [rows[i:i + 100] for i in range(0, len(rows), 100)]  # the data pipeline hands batches of texts
    assert json.loads(factory.train(iter(batches)).to_str()) == json.loads(reference.to_str())
