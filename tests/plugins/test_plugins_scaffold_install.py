"""A generated plugin package installs for real and its tests pass as generated."""
import pytest

from lstm_pipeline.scaffold import write
from lstm_pipeline.testing import ThrowawayEnv


@pytest.mark.slow
def test_generated_cell_plugin_installs_and_passes_its_tests(tmp_path):
    root = write("peephole", "cells", tmp_path)
    env = ThrowawayEnv(tmp_path / "venv")
    env.pip_install(root)
    out = env.run("-m", "lstm_pipeline.cli", "plugins", "--check").stdout
    assert "peephole               lstm-pipeline-peephole" in out and "FAILED" not in out
    res = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests"), cwd=tmp_path)
    assert " passed" in res.stdout and "failed" not in res.stdout and "skipped" not in res.stdout
    # the config it ships composes: model/cell=peephole
    cfg = env.run("-m", "lstm_pipeline.cli", "train", "model/cell=peephole", "--cfg", "job").stdout
    assert "name: peephole" in cfg


@pytest.mark.slow
def test_generated_package_with_a_component_of_every_group_installs_and_passes_its_tests(tmp_path):
    from lstm_pipeline.scaffold import GROUPS

    root = write("sru", ["cells", "decoders:top_a", "data_sources:sqlite", "tokenizers:sru_words",
                         "callbacks:sru_log", "logits_processors:top_a"], tmp_path)
    env = ThrowawayEnv(tmp_path / "venv")
    env.pip_install(root)
    out = env.run("-m", "lstm_pipeline.cli", "plugins", "--check").stdout
    ours = [line.split() for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 2]
    assert sum(cols[1] == "lstm-pipeline-sru" for cols in ours) == len(GROUPS) + 1  # + its config package
    assert "FAILED" not in out
    res = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests"), cwd=tmp_path)
    assert " passed" in res.stdout and "failed" not in res.stdout and "skipped" not in res.stdout
    cfg = env.run("-m", "lstm_pipeline.cli", "train", "model/cell=sru", "data=sqlite", "data.path=x.txt",
                  "tokenizer=sru_words", "callbacks=sru_log", "--cfg", "job").stdout
    assert "name: sru" in cfg and "name: sqlite" in cfg and "name: sru_words" in cfg and "name: sru_log" in cfg
    env.pip_uninstall("lstm-pipeline-sru")
