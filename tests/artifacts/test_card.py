"""The model card, read back by huggingface_hub's own parsers (ModelCard.load, card.data,
metadata_load, model_index_to_eval_results): Hub metadata, model-index metrics, no local absolute
path, and a "How to load" snippet that runs on the model it describes, locally and as pushed."""
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from lstm_pipeline.artifacts.hub import push_operations
from lstm_pipeline.artifacts.model_dir import save_pretrained
from lstm_pipeline.generation.pretrained import card_sample
from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.tokenization.base import TextTokenizer
from lstm_pipeline.tokenization.char import CharTokenizer

TEXT = "abc abd bca cab.\n" * 8  # no capital letters, no ':': "ROMEO:" is out of its vocabulary
CFG = {"cell": {"name": "gru"}, "embedding_dim": 8, "hidden_size": 16, "num_layers": 1}
METRICS = {"val_loss": 1.5, "val_ppl": 4.4817, "val_bpc": 2.164, "val_acc": 0.4}


def make(path: Path, data: dict, prompt: str = "ROMEO:", card: dict | None = None) -> Path:
    torch.manual_seed(0)
    tok = TextTokenizer(CharTokenizer().train([TEXT]))
    model = RecurrentLM(tok.vocab_size, **CFG).eval()
    return save_pretrained(model, CFG, tok, path, extra={
        "bos_token_id": tok.token_to_id("\n"), "metrics": METRICS, "data": data, "tokenizer": {"name": "char"},
        "sample": {"prompt": prompt, "max_new_tokens": 10}, **({"card": card} if card else {})}, sample=card_sample)


def snippets(card: str, lang: str) -> list[str]:
    how = card.split("## How to load")[1]
    return re.findall(rf"```{lang}\n(.*?)```", how, re.S)


def test_card_metadata_as_the_hub_reads_it(tmp_path):
    corpus = tmp_path / "private" / "corpus.txt"
    d = make(tmp_path / "run" / "model", {"name": "text", "path": str(corpus)})
    card = ModelCard.load(d / "README.md")
    data = card.data
    assert data.library_name == "lstm-pipeline" and data.pipeline_tag == "text-generation"
    assert {"lstm-pipeline", "gru", "recurrent-language-model", "char-tokenizer"} <= set(data.tags)
    assert data.license is None and data.language is None  # not stated unless known or set
    assert data.datasets == ["local text files: corpus.txt"]
    assert str(tmp_path / "private") not in (d / "README.md").read_text()  # no local absolute path, anywhere
    meta = metadata_load(d / "README.md")
    assert meta["model-index"][0]["name"] == "run"
    name, results = model_index_to_eval_results(meta["model-index"])
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert got == {("validation", "loss"): 1.5, ("validation", "perplexity"): 4.4817,
                   ("validation", "bpc"): 2.164, ("validation", "accuracy"): 0.4}
    assert {r.task_type for r in results} == {"text-generation"}
    assert [(r.metric_type, r.metric_value) for r in data.eval_results] == [(t, v) for (_, t), v in got.items()]


def test_card_settings_and_known_datasets(tmp_path):
    d = make(tmp_path / "a", {"name": "text", "path": None}, card={"license": "mit"})
    data = ModelCard.load(d / "README.md").data
    assert data.license == "mit" and data.datasets == ["karpathy/tiny_shakespeare"] and data.language == "en"
    d = make(tmp_path / "b", {"name": "hub", "path": "wikitext", "config_name": "wikitext-2-raw-v1"})
    data = ModelCard.load(d / "README.md").data
    assert data.datasets == ["wikitext"] and data.language == "en"
    d = make(tmp_path / "c", {"name": "files", "path": {"train": "/abs/tr.txt", "validation": "/abs/va.txt"}})
    assert ModelCard.load(d / "README.md").data.datasets == ["local files files: tr.txt, va.txt"]


def test_how_to_load_runs_on_a_model_without_the_default_prompt(tmp_path, monkeypatch, cli_in_process):
    """The run's prompt ("ROMEO:") is out of this vocabulary: the card says an empty prompt, and
    the real directory, and both its Python and its command line run as written."""
    d = make(tmp_path / "run" / "model", {"name": "text", "path": "x.txt"}, prompt="ROMEO:")
    card = (d / "README.md").read_text()
    assert "path/to/model" not in card and "ROMEO" not in card.split("## How to load")[1]
    python = snippets(card, "python")[0].replace("max_new_tokens=200", "max_new_tokens=5")
    assert repr(str(d)) in python
    out = {}
    exec(python, {"print": lambda text: out.setdefault("text", text)})
    assert isinstance(out["text"], str) and len(out["text"]) > 0
    cli = shlex.split(snippets(card, "bash")[0].replace("max_new_tokens=200", "max_new_tokens=5"))
    assert cli[:2] == ["lstm-pipeline", "generate"] and f"run={d}" in cli
    r = cli_in_process(*cli[1:])
    assert r.returncode == 0, r.stderr


def test_how_to_load_keeps_a_prompt_the_model_knows(tmp_path):
    d = make(tmp_path / "m", {"name": "text", "path": "x.txt"}, prompt="abc")
    python = snippets((d / "README.md").read_text(), "python")[0]
    assert "lm.generate('abc', max_new_tokens=200)" in python


def test_push_refreshes_repo_id_metrics_and_settings(tmp_path):
    d = make(tmp_path / "run" / "model", {"name": "text", "path": "x.txt"}, prompt="ROMEO:")
    local = (d / "README.md").read_text()
    (tmp_path / "run" / "eval.json").write_text(json.dumps(
        {"validation": {"loss": 1.25, "ppl": 3.49, "bpc": 1.8, "tokens": 10},
         "test": {"loss": 1.3, "ppl": 3.67, "bpc": 1.9, "tokens": 10}}))
    ops = push_operations(tmp_path / "run", "org/tiny-gru", license="apache-2.0", language="en")
    readme = next(op for op in ops if op.path_in_repo == "README.md").path_or_fileobj
    pushed = ModelCard(readme.decode())
    assert pushed.data.license == "apache-2.0" and pushed.data.language == "en"
    name, results = model_index_to_eval_results(pushed.data.to_dict()["model-index"])
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert name == "org/tiny-gru"
    assert got[("validation", "loss")] == 1.25 and got[("test", "bpc")] == 1.9 and got[("test", "perplexity")] == 3.67
    assert got[("validation", "accuracy")] == 0.4  # the export's own, where evaluate reported none
    how = pushed.text.split("## How to load")[1]
    assert "from_pretrained('org/tiny-gru')" in how and str(d) not in how and "ROMEO" not in how
    assert "| test | bpc | 1.9000 |" in pushed.text and "## Architecture" in pushed.text and "## Sample" in pushed.text
    assert (d / "README.md").read_text() == local  # the local card is left as it is
    assert [op.path_in_repo for op in ops] == [op.path_in_repo for op in push_operations(d)]
