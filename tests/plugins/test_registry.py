"""Registries read entry points lazily from installed distributions: exercised here with real
dist-info directories put on sys.path (the same metadata pip writes)."""
import sys

import pytest

from helpers import make_dist
from lstm_pipeline.registry import (CELLS, DuplicateComponentError, PluginAPIError, PluginImportError, Registry,
                                    UnknownComponentError, validate_kwargs)


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fake_plugin")]:
        del sys.modules[mod]


def test_lists_builtins_with_distribution():
    entries = CELLS.entries()
    assert {"lstm", "gru"} <= set(entries)
    assert entries["lstm"].distribution == "lstm-pipeline"


def test_listing_is_lazy_and_loading_imports(site):
    make_dist(site, "fake-plugin-a", """
        [test_lp.group]
        thing = fake_plugin_a:Thing
        """, {"fake_plugin_a.py": "class Thing:\n    def __init__(self, size: int = 3):\n        self.size = size\n"})
    reg = Registry("test_lp.group", "widget")
    assert reg.names() == ["thing"]
    assert "fake_plugin_a" not in sys.modules  # listing imported nothing
    obj = reg.build({"name": "thing", "size": 5})
    assert obj.size == 5 and "fake_plugin_a" in sys.modules


def test_new_entry_points_are_seen_without_restart(site):
    reg = Registry("test_lp.late", "widget")
    assert reg.names() == []
    make_dist(site, "fake-plugin-late", "[test_lp.late]\nlate = fake_plugin_late:X\n")
    assert reg.names() == ["late"]


def test_lookups_reuse_the_entry_points_until_the_installation_changes(site):
    """Reading every distribution's entry points takes ~10 ms; a lookup reuses them while nothing
    installed changed, and sees an edit, an in-place uninstall and a new install at once."""
    import time

    from lstm_pipeline import registry

    make_dist(site, "fake-plugin-cache", "[test_lp.cache]\na = fake_plugin_cache:A\n",
              {"fake_plugin_cache.py": "class A: pass\nclass B: pass\n"})
    reg = Registry("test_lp.cache", "widget")
    time.sleep(0.1)  # older than a file-time tick: the installation has settled
    assert reg.get("a").__name__ == "A"
    reads = registry._SCANNED["generation"]
    for _ in range(5):
        assert reg.get("a").__name__ == "A" and reg.names() == ["a"]
    assert registry._SCANNED["generation"] == reads  # not read again
    info = site / "fake_plugin_cache-0.1.dist-info"
    (info / "entry_points.txt").write_text("[test_lp.cache]\na = fake_plugin_cache:A\nb = fake_plugin_cache:B\n")
    assert reg.get("b").__name__ == "B"  # edited in place
    (info / "entry_points.txt").unlink()
    with pytest.raises(UnknownComponentError):  # uninstalled in place
        reg.get("a")
    make_dist(site, "fake-plugin-cache2", "[test_lp.cache]\nc = fake_plugin_cache:A\n")
    assert reg.names() == ["c"]  # a new distribution


def test_duplicate_name_is_an_error_only_when_selected(site):
    make_dist(site, "fake-plugin-one", "[test_lp.dup]\nsame = fake_plugin_one:A\nother = fake_plugin_one:C\n",
              {"fake_plugin_one.py": "class A: pass\nclass C: pass\n"})
    make_dist(site, "fake-plugin-two", "[test_lp.dup]\nsame = fake_plugin_two:B\n")
    reg = Registry("test_lp.dup", "widget")
    assert reg.names() == ["other", "same"]  # listing never fails
    assert reg.get("other").__name__ == "C"  # the group's other names work
    with pytest.raises(DuplicateComponentError) as err:
        reg.get("same")
    assert "fake-plugin-one" in str(err.value) and "fake-plugin-two" in str(err.value)
    assert list(reg.duplicates()) == ["same"]


def test_unknown_name_lists_available_and_suggests():
    with pytest.raises(UnknownComponentError) as err:
        CELLS.get("lsmt")
    msg = str(err.value)
    assert "Unknown cell 'lsmt'" in msg and "gru" in msg and "lstm" in msg and "Did you mean 'lstm'" in msg


def test_import_error_is_reraised_with_plugin_name(site):
    make_dist(site, "fake-plugin-broken", "[test_lp.broken]\nbad = fake_plugin_broken:X\n",
              {"fake_plugin_broken.py": "import not_a_real_module_xyz\n"})
    with pytest.raises(PluginImportError) as err:
        Registry("test_lp.broken", "widget").get("bad")
    assert "fake-plugin-broken" in str(err.value) and "not_a_real_module_xyz" in str(err.value)
    assert isinstance(err.value.__cause__, ImportError)


def test_incompatible_api_version_is_refused(site):
    make_dist(site, "fake-plugin-future", "[test_lp.api]\nnew = fake_plugin_future:X\n",
              {"fake_plugin_future.py": "class X:\n    lstm_pipeline_api = '2.0'\n"})
    with pytest.raises(PluginAPIError, match="API 2.0"):
        Registry("test_lp.api", "widget").get("new")


def test_unknown_setting_is_named():
    with pytest.raises(TypeError, match="'proj_sise'.*Did you mean 'proj_size'"):
        CELLS.build({"name": "lstm", "proj_sise": 3}, input_size=2, hidden_size=4)
    with pytest.raises(TypeError, match="needs the setting 'b'"):
        validate_kwargs(lambda a, b: None, {"a": 1}, "f")
