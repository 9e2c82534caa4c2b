"""Plugin API versions, `lstm-pipeline plugins --check`, broken plugins that do not break runs,
and the Hydra search-path plugin, with real dist-info metadata put on sys.path."""
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.cli import main
from lstm_pipeline.config.schema import register_schemas
from helpers import make_dist
from lstm_pipeline.registry import (CELLS, PluginAPIError, Registry, api_compatible, config_options, declared_api,
                                    shipped_config)


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fakeplug")]:
        del sys.modules[mod]


def test_api_versions():
    assert api_compatible("1") and api_compatible("1.3") and api_compatible("1.x")
    assert not api_compatible("2") and not api_compatible("0.9")


def test_module_level_constant_declares_the_api(site):
    make_dist(site, "fakeplug-old", "[test_lp.modapi]\nold = fakeplug_old.cells:Old\nnew = fakeplug_new:New\n", {
        "fakeplug_old/__init__.py": "LSTM_PIPELINE_API = '0.4'\n",
        "fakeplug_old/cells.py": "class Old:\n    pass\n",
        "fakeplug_new.py": "LSTM_PIPELINE_API = '1.2'\nclass New:\n    pass\n"})
    reg = Registry("test_lp.modapi", "widget")
    with pytest.raises(PluginAPIError) as err:
        reg.get("old")
    msg = str(err.value)
    assert "widget 'old' from 'fakeplug-old'" in msg and "API 0.4" in msg and "provides API 1" in msg
    assert declared_api(reg.get("new")) == "1.2"


def test_class_attribute_wins_over_module_constant(site):
    make_dist(site, "fakeplug-mixed", "[test_lp.mixed]\nx = fakeplug_mixed:X\n",
              {"fakeplug_mixed.py": "LSTM_PIPELINE_API = '1'\nclass X:\n    lstm_pipeline_api = '3'\n"})
    with pytest.raises(PluginAPIError, match="API 3"):
        Registry("test_lp.mixed", "widget").get("x")


BROKEN = {
    "fakeplug_broken/__init__.py": "raise RuntimeError('this plugin is broken on purpose')\n",
    "fakeplug_broken/conf/__init__.py": "",
    "fakeplug_broken/conf/model/cell/broken.yaml": "name: broken\n",
    "fakeplug_future.py": "class Cell:\n    lstm_pipeline_api = '2'\n",
}


def test_plugins_check_reports_broken_and_incompatible_plugins(site, capsys):
    make_dist(site, "fakeplug-broken", """
        [lstm_pipeline.cells]
        broken = fakeplug_broken.cell:Cell
        future = fakeplug_future:Cell
        [lstm_pipeline.conf]
        fakeplug-broken = fakeplug_broken.conf
        """, BROKEN)
    assert main(["plugins"]) == 0  # listing imports nothing, so it cannot fail
    out = capsys.readouterr().out
    assert "broken" in out and "fakeplug-broken" in out and "FAILED" not in out
    assert main(["plugins", "--check"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().startswith("broken "))
    assert "FAILED:" in lines[i + 1] and "this plugin is broken on purpose" in lines[i + 1]
    j = next(n for n, line in enumerate(lines) if line.strip().startswith("future "))
    assert "FAILED:" in lines[j + 1] and "API 2" in lines[j + 1]
    assert "lstm                   lstm-pipeline" in out and "ok (API 1)" in out


def test_broken_plugin_does_not_break_runs_that_do_not_use_it(site):
    make_dist(site, "fakeplug-broken", """
        [lstm_pipeline.cells]
        broken = fakeplug_broken.cell:Cell
        [lstm_pipeline.conf]
        fakeplug-broken = fakeplug_broken.conf
        """, BROKEN)
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("train", overrides=["model/cell=gru"])  # the search path skips the broken package
    assert cfg.model.cell.name == "gru"
    assert CELLS.build({"name": "gru"}, input_size=2, hidden_size=3).hidden_size == 3


def test_search_path_plugin_adds_plugin_config_groups(site, capsys):
    make_dist(site, "fakeplug-conf", "[lstm_pipeline.conf]\nfakeplug-conf = fakeplug_conf.conf\n", {
        "fakeplug_conf/__init__.py": "",
        "fakeplug_conf/conf/__init__.py": "",
        "fakeplug_conf/conf/model/cell/tiny_gru.yaml": "# a GRU under another name\nname: gru\n",
        "fakeplug_conf/conf/optim/fakeplug_sgd.yaml": "_target_: torch.optim.SGD\nlr: 0.5\n"})
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("train", overrides=["model/cell=tiny_gru", "optim=fakeplug_sgd"])
    assert cfg.model.cell.name == "gru" and cfg.optim.lr == 0.5
    assert "tiny_gru" in config_options("model/cell") and "lstm" in config_options("model/cell")
    assert shipped_config("model/cell", "lstm") == {"name": "lstm"}  # the file; its settings come from the cell


def test_plugin_config_module_is_cheap_to_import():
    import subprocess

    code = ("import sys, hydra_plugins.lstm_pipeline_searchpath.lstm_pipeline_searchpath; "
            "print(sorted(m for m in ('torch', 'lightning', 'datasets', 'lstm_pipeline') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_component_by_config_group_is_a_registry_error(capsys):
    assert main(["train", "model/cell=lsmt"]) == 1
    err = capsys.readouterr().err
    assert "Unknown cell 'lsmt'. Available cells:" in err and "Did you mean 'lstm'" in err
    assert main(["generate", "run=x", "decoding=gredy"]) == 1
    assert "Unknown decoder 'gredy'" in capsys.readouterr().err


def test_registered_component_without_config_file_says_how_to_select_it(site, capsys):
    make_dist(site, "fakeplug-noconf", "[lstm_pipeline.cells]\nnoconf = fakeplug_noconf:Cell\n")
    assert main(["train", "model/cell=noconf"]) == 1
    err = capsys.readouterr().err
    assert "ships no config file model/cell/noconf.yaml" in err and "model.cell.name=noconf" in err
