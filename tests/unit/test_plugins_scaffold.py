"""`lstm-pipeline plugins new`: what the scaffold writes, for every group (installing and testing
a generated package for real is in tests/integration/test_plugins_scaffold_install.py)."""
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
    assert (root / "src/lstm_pipeline_peephole/conf/model/cell/peephole.yaml").read_text().endswith("name: peephole\n")
    assert "pip install -e" in capsys.readouterr().out
    assert main(["plugins", "new", "peephole", "--group", "cells", "--dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plugins", "new", "x", "--group", "widgets"])
    assert "invalid choice: 'widgets'" in capsys.readouterr().err
