"""`lstm-pipeline plugins new`: what the scaffold writes, for every group (installing and testing
a generated package for real is in tests/plugins/test_plugins_scaffold_install.py)."""
import ast
import tomllib

import pytest
import yaml

from lstm_pipeline.cli import main
from lstm_pipeline.scaffold import GROUPS, ScaffoldError, names_for, render


@pytest.mark.parametrize("group", GROUPS)
def test_skeleton_is_complete_for_every_group(group):
    files = render("my-thing", group)
    meta = tomllib.loads(files["pyproject.toml"])
    assert meta["project"]["name"] == "lstm-pipeline-my-thing"
    eps = meta["project"]["entry-points"]
    assert eps[f"lstm_pipeline.{group}"] == {"my_thing": f"lstm_pipeline_my_thing.{render_module(group)}"}
    for path, text in files.items():
        if path.endswith(".py"):
            ast.parse(text, filename=path)  # valid Python
            assert "$" not in text, f"unfilled template variable in {path}"
        if path.endswith(".yaml"):
            node = yaml.safe_load(text)
            assert node["name" if group != "callbacks" else "my_thing"] is not None
    init = files["src/lstm_pipeline_my_thing/__init__.py"]
    assert 'LSTM_PIPELINE_API = "1"' in init
    test = next(t for p, t in files.items() if p.startswith("tests/"))
    assert "def test_" in test or "Contract" in test
    has_config = any(p.endswith(".yaml") for p in files)
    assert has_config == (group != "logits_processors")
    assert ("lstm_pipeline.conf" in eps) == has_config
    assert "TODO" in next(t for p, t in files.items() if p.count("/") == 2 and not p.endswith("__init__.py")
                          and p.startswith("src/"))


def render_module(group):
    return {"cells": "cell:MyThingCell", "decoders": "decoder:MyThingDecoder", "data_sources": "source:MyThingSource",
            "tokenizers": "tokenizer:MyThingTokenizer", "callbacks": "callback:MyThingCallback",
            "logits_processors": "processor:MyThingProcessor"}[group]


def test_names():
    assert names_for("lstm-pipeline-peephole") == names_for("peephole") == {
        "dist": "lstm-pipeline-peephole", "pkg": "lstm_pipeline_peephole", "name": "peephole", "camel": "Peephole"}
    for bad in ("Peephole", "9cell", "my cell", ""):
        with pytest.raises(ScaffoldError, match="must start with a lowercase letter"):
            names_for(bad)


def test_cli_writes_the_package_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["plugins", "new", "peephole", "--group", "cells", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "lstm-pipeline-peephole"
    assert "\nname: peephole\n" in (root / "src/lstm_pipeline_peephole/conf/model/cell/peephole.yaml").read_text()
    assert "pip install -e" in capsys.readouterr().out
    assert main(["plugins", "new", "peephole", "--group", "cells", "--dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plugins", "new", "x", "--group", "widgets"])
    assert "invalid choice: 'widgets'" in capsys.readouterr().err


# -- issue 14: several components per package, sane names, registered names refused, every hook ---
def test_names_are_normalised_and_classes_end_in_their_group_word_once():
    from lstm_pipeline.scaffold import class_name

    assert names_for("xdata_sources")["dist"] == "lstm-pipeline-xdata-sources"  # as pip normalises it
    assert names_for("lstm_pipeline_my__cell") == {"dist": "lstm-pipeline-my-cell", "pkg": "lstm_pipeline_my_cell",
                                                   "name": "my_cell", "camel": "MyCell"}
    assert class_name("my_cell", "cells") == "MyCell" and class_name("sru", "cells") == "SruCell"
    assert class_name("ebook_sources", "data_sources") == "EbookSource"
    assert class_name("top_a", "decoders") == "TopADecoder"
    files = render("my-cell", "cells")
    assert "class MyCell(RecurrentCell)" in files["src/lstm_pipeline_my_cell/cell.py"]
    assert "MyCellCell" not in "".join(files.values())
    with pytest.raises(ScaffoldError, match="after 'lstm-pipeline-'"):
        names_for("lstm-pipeline")


def test_one_package_holds_several_components():
    files = render("sru", ["cells", "decoders:top_a", "logits_processors:top_a", "data_sources:sqlite",
                           "cells:sru_small"])
    meta = tomllib.loads(files["pyproject.toml"])
    eps = meta["project"]["entry-points"]
    assert meta["project"]["name"] == "lstm-pipeline-sru"
    assert eps["lstm_pipeline.cells"] == {"sru": "lstm_pipeline_sru.cell_sru:SruCell",
                                          "sru_small": "lstm_pipeline_sru.cell_sru_small:SruSmallCell"}
    assert eps["lstm_pipeline.decoders"] == {"top_a": "lstm_pipeline_sru.decoder:TopADecoder"}
    assert eps["lstm_pipeline.logits_processors"] == {"top_a": "lstm_pipeline_sru.processor:TopAProcessor"}
    assert eps["lstm_pipeline.data_sources"] == {"sqlite": "lstm_pipeline_sru.source:SqliteSource"}
    assert eps["lstm_pipeline.conf"] == {"lstm-pipeline-sru": "lstm_pipeline_sru.conf"}
    for path in ("src/lstm_pipeline_sru/conf/model/cell/sru.yaml", "src/lstm_pipeline_sru/conf/model/cell/sru_small.yaml",
                 "src/lstm_pipeline_sru/conf/decoding/top_a.yaml", "src/lstm_pipeline_sru/conf/data/sqlite.yaml",
                 "tests/test_sru_cell.py", "tests/test_top_a_decoder.py", "tests/test_top_a_processor.py",
                 "tests/test_sqlite_source.py"):
        assert path in files, path
    for path, text in files.items():
        if path.endswith(".py"):
            ast.parse(text, filename=path)
    with pytest.raises(ScaffoldError, match="given twice"):
        render("sru", ["cells", "cells:sru"])


def test_refuses_names_already_registered(tmp_path, capsys):
    assert main(["plugins", "new", "lstm", "--group", "cells", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cell 'lstm' is already registered by the distribution 'lstm-pipeline'" in err and "cells:my_lstm" in err
    assert main(["plugins", "new", "mine", "--group", "decoders:greedy", "--dir", str(tmp_path)]) == 1
    assert "decoder 'greedy' is already registered" in capsys.readouterr().err
    # a config file of that name would shadow or be shadowed by the one already there
    assert main(["plugins", "new", "mine", "--group", "data_sources:shakespeare", "--dir", str(tmp_path)]) == 1
    assert "already has a file 'shakespeare.yaml'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_generated_components_spell_out_every_hook():
    files = render("hooks", ["cells", "decoders", "data_sources", "tokenizers"])
    cell = files["src/lstm_pipeline_hooks/cell.py"]
    for hook in ("def output_size", "state_batch_dims", "def init_state", "def forward", "def step", "reorder_state",
                 "self.training"):
        assert hook in cell, hook
    decoder = files["src/lstm_pipeline_hooks/decoder.py"]
    for hook in ("OWN", "def name", "def check", "def select", "SAMPLES", "scores_are_logprob_sums"):
        assert hook in decoder, hook
    decoding = yaml.safe_load(files["src/lstm_pipeline_hooks/conf/decoding/hooks.yaml"])
    assert decoding["repetition_penalty"] == 1.0 and decoding["no_repeat_ngram_size"] == 0  # the shared settings
    source = files["src/lstm_pipeline_hooks/source.py"]
    for hook in ("text_column", "eos_token", "document_separator", "cache_dir", "def load"):
        assert hook in source, hook
    data = yaml.safe_load(files["src/lstm_pipeline_hooks/conf/data/hooks.yaml"])
    assert {"eos_token", "document_separator", "min_length", "streaming", "cache_dir"} <= set(data)
    tokenizer = files["src/lstm_pipeline_hooks/tokenizer.py"]
    for hook in ("lossless", "needs_training", "deterministic", "def train"):
        assert hook in tokenizer, hook


def test_templates_are_package_data_files_that_are_never_modules():
    from fnmatch import fnmatch
    from importlib import resources
    from pathlib import Path

    root = resources.files("lstm_pipeline.scaffold") / "templates"
    found = [p for p in Path(str(root)).rglob("*") if p.is_file()]
    assert len(found) >= 20 and all(p.name.endswith(".tmpl") for p in found)  # neither collected nor importable
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["lstm_pipeline"]
    package = Path(str(resources.files("lstm_pipeline")))
    for p in found:  # each ships in the wheel
        rel = p.relative_to(package).as_posix()
        assert any(fnmatch(rel, g.replace("**/", "*")) for g in globs), rel
