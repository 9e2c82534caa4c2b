"""Issue 14: plugins a third party can trust. Real dist-info metadata on sys.path (the same files
pip writes), real registries, the real CLI.

1. a duplicate name breaks only that name; 2. the API version is found the same way for every
group; 5. a broken plugin config package is skipped with one warning, and a run records the
distribution of each component so that a missing one says what to install."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from helpers import make_dist
from lstm_pipeline import registry
from lstm_pipeline.cli import main
from lstm_pipeline.config.checks import check
from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.registry import CELLS, DuplicateComponentError, PluginAPIError, UnknownComponentError, declared_api

SRC = Path(registry.__file__).resolve().parents[1]


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    saved = dict(getattr(registry, "_EXPECTED", {}))
    yield root
    if hasattr(registry, "_EXPECTED"):
        registry._EXPECTED.clear()
        registry._EXPECTED.update(saved)
    for mod in [m for m in sys.modules if m.startswith("trustplug")]:
        del sys.modules[mod]


SRU = "from lstm_pipeline.cells.fused import GRU\n\nclass Sru(GRU):\n    pass\n"


def compose_train(*overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


# -- 1. duplicates ------------------------------------------------------------------------------
def test_two_packages_registering_one_cell_break_only_that_cell(site, tiny_corpus, capsys):
    make_dist(site, "trustplug-a", "[lstm_pipeline.cells]\nsru = trustplug_a:Sru\n", {"trustplug_a.py": SRU})
    make_dist(site, "trustplug-b", "[lstm_pipeline.cells]\nsru = trustplug_b:Sru\n", {"trustplug_b.py": SRU})
    # every other cell, built-ins included, still trains
    check("train", compose_train("model/cell=gru", "data=text", f"data.path={tiny_corpus}"))
    assert CELLS.build({"name": "lstm"}, input_size=2, hidden_size=3).hidden_size == 3
    # selecting the duplicate is the error, naming both distributions
    with pytest.raises(DuplicateComponentError, match="trustplug-a.*trustplug-b"):
        check("train", compose_train("model.cell.name=sru", "data=text", f"data.path={tiny_corpus}"))
    # and `plugins --check` reports it
    assert main(["plugins", "--check"]) == 1
    out = capsys.readouterr().out
    assert "DUPLICATE: cell 'sru'" in out and "ok (API 1)" in out


# -- 2. API versions ----------------------------------------------------------------------------
COMPONENTS = {  # group -> a component subclassing lstm-pipeline's base class where the group has one
    "cells": "from lstm_pipeline.cells.fused import GRU\n\nclass C(GRU):\n    pass\n",
    "decoders": "from lstm_pipeline.generation.strategies import Greedy\n\nclass C(Greedy):\n    pass\n",
    "data_sources": "from lstm_pipeline.data.sources import TextSource\n\nclass C(TextSource):\n    pass\n",
    "tokenizers": "from lstm_pipeline.tokenization.char import CharTokenizer\n\nclass C(CharTokenizer):\n    pass\n",
    "callbacks": "from lstm_pipeline.data.vbptt import VariableBPTTScaler\n\nclass C(VariableBPTTScaler):\n    pass\n",
    "logits_processors": "from lstm_pipeline.generation.processors import TopK\n\nclass C(TopK):\n    pass\n",
}


@pytest.mark.parametrize("group", sorted(COMPONENTS))
def test_package_declaring_another_api_is_refused_in_every_group(site, group):
    make_dist(site, f"trustplug-{group}", f"[lstm_pipeline.{group}]\nfuture_{group} = trustplug_{group}.comp:C\n", {
        f"trustplug_{group}/__init__.py": "LSTM_PIPELINE_API = '2'\n",
        f"trustplug_{group}/comp.py": COMPONENTS[group]})
    reg = next(r for r in registry.ALL if r.group == f"lstm_pipeline.{group}")
    with pytest.raises(PluginAPIError, match="API 2"):
        reg.get(f"future_{group}")


def test_base_class_attribute_is_not_the_plugins_declaration(site, capsys):
    make_dist(site, "trustplug-undeclared", "[lstm_pipeline.cells]\nundeclared = trustplug_undeclared:C\n",
              {"trustplug_undeclared.py": COMPONENTS["cells"]})
    cls = CELLS.get("undeclared")
    assert declared_api(cls) is None  # RecurrentCell's own "1" does not count for the plugin
    assert main(["plugins", "--check"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("undeclared "))
    assert "declares no plugin API" in line and "LSTM_PIPELINE_API" in line
    # the contract suites' "API declared" check fails on it
    from lstm_pipeline.testing import CellContract

    class Suite(CellContract):
        def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
            return cls(input_size, hidden_size, num_layers, dropout)

    with pytest.raises(AssertionError, match="declares no plugin API"):
        Suite().test_is_a_recurrent_cell_with_api()
    assert declared_api(CELLS.get("lstm")) == "1"  # built-ins declare through their own base class


# -- 5. isolation and provenance ----------------------------------------------------------------
@pytest.mark.parametrize("error", ["ImportError('no module named sqlite_ext')", "OSError('libfoo.so: cannot open')",
                                   "RuntimeError('CUDA driver too old')"])
def test_config_package_failing_on_import_is_skipped_with_one_warning(site, error):
    make_dist(site, "trustplug-broken-conf", "[lstm_pipeline.conf]\ntrustplug-broken-conf = trustplug_bc.conf\n", {
        "trustplug_bc/__init__.py": "",
        "trustplug_bc/conf/__init__.py": f"raise {error}\n",
        "trustplug_bc/conf/model/cell/bc.yaml": "name: gru\n"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)])}
    proc = subprocess.run([sys.executable, "-m", "lstm_pipeline.cli", "train", "--help"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model/cell: " in proc.stdout.replace("\t", "")
    warnings = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 1, proc.stderr
    assert "warning: skipping" in warnings[0] and "'trustplug-broken-conf'" in warnings[0]
    assert error.split("(")[0] in warnings[0] and "Traceback" not in proc.stderr


def fake_run(tmp_path, cfg) -> Path:
    """A run directory as train leaves it, as far as the commands that reuse a run read it first."""
    from lstm_pipeline.registry import write_provenance

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- model/cell=sru\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    write_provenance(run, cfg)
    return run


def test_run_records_the_distribution_and_a_missing_one_says_what_to_install(site, tmp_path, capsys, monkeypatch):
    from lstm_pipeline.registry import provenance, read_provenance

    make_dist(site, "trustplug-sru", "[lstm_pipeline.cells]\nsru = trustplug_sru:Sru\n", {"trustplug_sru.py": SRU})
    assert provenance("model/cell", "sru") == {"group": "lstm_pipeline.cells", "name": "sru",
                                               "distribution": "trustplug-sru", "version": "0.1"}
    assert provenance("cells", "lstm")["distribution"] == "lstm-pipeline"
    run = fake_run(tmp_path, {"model": {"cell": {"name": "sru"}}, "data": {"name": "text"},
                              "tokenizer": {"name": "char"}, "callbacks": {"lr": {"name": "lr_monitor"}}})
    recorded = json.loads((run / "components.json").read_text())
    assert recorded["model.cell"]["distribution"] == "trustplug-sru"
    assert recorded["callbacks.lr"]["name"] == "lr_monitor" and recorded["data"]["distribution"] == "lstm-pipeline"
    assert read_provenance(run / "model") == recorded == read_provenance(run / "checkpoints" / "last.ckpt")

    # the plugin is uninstalled
    (site / "trustplug_sru-0.1.dist-info" / "entry_points.txt").unlink()
    for argv in (["train", f"ckpt_path={run}"], ["generate", f"run={run}"], ["evaluate", f"run={run}"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "cell 'sru'" in err and "'trustplug-sru'" in err and "pip install 'trustplug-sru==0.1'" in err, err
        assert "Did you mean" not in err and "Could not find" not in err and len(err.strip().splitlines()) == 1
    # any later lookup of that name (the model loader's) says the same
    with pytest.raises(UnknownComponentError, match="pip install 'trustplug-sru==0.1'"):
        CELLS.get("sru")


# -- 4. shared settings reach plugin components ---------------------------------------------------
PLAIN_SOURCE = '''
import datasets
from lstm_pipeline.data.sources import contiguous_splits

LSTM_PIPELINE_API = "1"


class Plain:
    """A plugin source that takes only its own setting."""
    text_column = "text"

    def __init__(self, path):
        self.path = path

    def load(self):
        rows = open(self.path).read().splitlines(keepends=True)
        return contiguous_splits(datasets.Dataset.from_dict({"text": rows}), 0.1, 0.1)
'''


def test_plugin_source_takes_the_shared_data_settings(site, tmp_path, tiny_corpus):
    from lstm_pipeline.data.pipeline import prepare_corpus

    make_dist(site, "trustplug-plain", "[lstm_pipeline.data_sources]\nplain = trustplug_plain:Plain\n",
              {"trustplug_plain.py": PLAIN_SOURCE})
    corpus = tmp_path / "c.txt"
    corpus.write_text(tiny_corpus.read_text())
    node = {"name": "plain", "path": str(corpus), "eos_token": "<eos>", "min_length": 20, "streaming": False,
            "document_separator": None, "cache_dir": str(tmp_path / "cache")}
    cfg = compose_train("data=text", f"data.path={corpus}")
    cfg.data = node
    check("train", cfg)  # the shared settings are accepted for a source that does not take them
    tokenizer = {"name": "char"}
    c = prepare_corpus(node, tokenizer)
    assert c.eos_token == "<eos>" and c.tokenizer.token_to_id("<eos>") is not None
    lines = [ln for ln in corpus.read_text().splitlines(keepends=True)]
    kept = [ln for ln in lines if len(ln.strip()) >= 20]
    assert len(c.doc_offsets["train"]) - 1 + len(c.doc_offsets["validation"]) - 1 + len(c.doc_offsets["test"]) - 1 \
        == len(kept) < len(lines)  # min_length dropped the short rows
    from lstm_pipeline.data.pipeline import cache_root, load_source

    assert cache_root(load_source(node)[1]) == tmp_path / "cache" / "lstm_pipeline"  # cache_dir reaches the pipeline
    streamed = prepare_corpus({**node, "streaming": True}, tokenizer)
    assert streamed.streaming and set(streamed.streams) == {"train", "validation", "test"}
    first = next(iter(streamed.streams["train"]))["text"]
    assert len(first.strip()) >= 20
    with pytest.raises(TypeError, match="does not take the setting 'min_lenght'"):
        registry.DATA_SOURCES.build({**node, "min_lenght": 3})


def test_generated_decoder_takes_the_settings_every_strategy_takes(tmp_path, monkeypatch):
    from lstm_pipeline.generation.strategies import Greedy
    from lstm_pipeline.scaffold import write
    from lstm_pipeline.testing import DecoderContract

    root = write("trustplug-dec", ["decoders:trustplug_greedy"], tmp_path)
    monkeypatch.syspath_prepend(str(root / "src"))
    from lstm_pipeline_trustplug_dec.decoder import TrustplugGreedyDecoder

    model = DecoderContract().make_model()
    prompts = [[1, 2, 3], [4, 5]]
    for settings in ({"repetition_penalty": 3.0}, {"no_repeat_ngram_size": 1}, {"bad_words_ids": [[5]]}):
        ours = TrustplugGreedyDecoder(**settings).generate(model, prompts, max_new_tokens=8)
        builtin = Greedy(**settings).generate(model, prompts, max_new_tokens=8)
        assert ours.sequences == builtin.sequences, settings
    plain = TrustplugGreedyDecoder().generate(model, prompts, max_new_tokens=8)
    assert plain.sequences != TrustplugGreedyDecoder(no_repeat_ngram_size=1).generate(model, prompts, 8).sequences
    with pytest.raises(TypeError, match="'repetition_penalti'.*Did you mean 'repetition_penalty'"):
        TrustplugGreedyDecoder(repetition_penalti=1.2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TrustplugGreedyDecoder(temperature=0)


OWN_INIT_DECODER = '''
from lstm_pipeline.generation.strategies import StepDecoding

LSTM_PIPELINE_API = "1"


class Cold(StepDecoding):
    """Written with its own __init__ that never calls the base class's (so, before, it silently ran
    without the constraint settings, or refused them)."""

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def select(self, scores, generator):
        return (scores / self.temperature).argmax(-1)
'''


def test_plugin_decoder_with_its_own_init_gets_the_settings_every_strategy_takes(site):
    from lstm_pipeline.generation.strategies import Greedy
    from lstm_pipeline.registry import DECODERS
    from lstm_pipeline.testing import DecoderContract

    make_dist(site, "trustplug-cold", "[lstm_pipeline.decoders]\ncold = trustplug_cold:Cold\n",
              {"trustplug_cold.py": OWN_INIT_DECODER})
    model = DecoderContract().make_model()
    prompts = [[1, 2, 3], [4, 5]]
    for settings in ({"repetition_penalty": 3.0}, {"no_repeat_ngram_size": 1, "min_new_tokens": 4}):
        ours = DECODERS.build({"name": "cold", "temperature": 1.0, **settings}).generate(model, prompts, 8)
        assert ours.sequences == Greedy(**settings).generate(model, prompts, 8).sequences, settings
    # off values change nothing; a bad value or a misspelt name is an error naming it
    plain = DECODERS.build({"name": "cold", "repetition_penalty": 1.0, "bad_words_ids": None})
    assert plain.generate(model, prompts, 8).sequences == Greedy().generate(model, prompts, 8).sequences
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        DECODERS.build({"name": "cold", "repetition_penalty": -1.0})
    with pytest.raises(TypeError, match="'repetition_penalti'. Did you mean 'repetition_penalty'"):
        DECODERS.build({"name": "cold", "repetition_penalti": 1.2})


def test_generate_needs_only_the_recorded_cell_while_evaluate_and_resume_need_every_component(site, tmp_path):
    from lstm_pipeline.config.overrides import check_recorded_components as _check_recorded_components

    make_dist(site, "trustplug-src", "[lstm_pipeline.data_sources]\nsq = trustplug_src:S\n",
              {"trustplug_src.py": "class S:\n    pass\n"})
    run = fake_run(tmp_path, {"model": {"cell": {"name": "gru"}}, "data": {"name": "sq"}})
    (site / "trustplug_src-0.1.dist-info" / "entry_points.txt").unlink()  # uninstalled
    for command in ("generate", "export", "push"):
        _check_recorded_components(command, [f"run={run}"])  # the model needs no data source
    for command, arg in (("evaluate", "run"), ("train", "ckpt_path")):
        with pytest.raises(UnknownComponentError, match=r"data source 'sq' \(data\) from the distribution 'trustplug-src'"):
            _check_recorded_components(command, [f"{arg}={run}"])
