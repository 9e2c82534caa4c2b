"""Any registered logits processor (a plugin's too) is switched on by name, from Python and from the
command line, for every strategy, in the documented order; the scaffold's processor works as generated."""
import shutil
import sys

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from helpers import make_dist
from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.generation.processors import TopK, build_processors
from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.registry import DECODERS

PLUGIN = {
    "fakeproc/__init__.py": "",
    # no base class, no setup(): a plain callable class is a processor
    "fakeproc/ban.py": """
        import torch

        class Ban:
            def __init__(self, banned_ids=()):
                self.banned_ids = list(banned_ids)

            def __call__(self, history, logits):
                out = logits.clone()
                out[:, self.banned_ids] = float("-inf")
                return out

        class Shift:
            stage = "constraint"

            def __init__(self, by=1.0):
                self.by = by

            def __call__(self, history, logits):
                return logits + self.by
        """,
}


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    make_dist(tmp_path, "fakeproc", "[lstm_pipeline.logits_processors]\nban = fakeproc.ban:Ban\n"
                                    "shift = fakeproc.ban:Shift\n", PLUGIN)
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fakeproc")]:
        del sys.modules[mod]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return RecurrentLM(12, {"name": "lstm"}, embedding_dim=8, hidden_size=16, num_layers=1).eval()


@pytest.mark.parametrize("name", ["greedy", "sample", "nucleus", "beam", "beam_sample", "diverse_beam", "contrastive"])
def test_a_plugin_processor_works_with_every_strategy(plugin, model, name):
    plain = DECODERS.build({"name": "greedy"}).generate(model, [[1, 2]], max_new_tokens=6).sequences[0]
    banned = sorted(set(plain))
    settings = {"name": name, "processors": {"ban": {"banned_ids": banned}}}
    if name == "diverse_beam":
        settings["num_beams"] = 4
    out = DECODERS.build(settings).generate(model, [[1, 2]], max_new_tokens=6,
                                            generator=torch.Generator().manual_seed(0))
    assert out.sequences[0] and not set(out.sequences[0]) & set(banned)


def test_order_is_constraints_then_named_constraints_then_filters_then_named_filters(plugin):
    procs = build_processors({"repetition_penalty": 1.3, "temperature": 0.7, "top_k": 5,
                              "processors": {"ban": {"banned_ids": [1]}, "shift": None}})
    assert [type(p).__name__ for p in procs] == ["RepetitionPenalty", "Shift", "Temperature", "TopK", "Ban"]
    # a built-in named in processors takes its own place
    procs = build_processors({"processors": ["ban", "top_k"], "temperature": 0.5})
    assert [type(p).__name__ for p in procs] == ["Temperature", "TopK", "Ban"]
    assert isinstance(procs[1], TopK)


def test_from_the_command_line(plugin, model):
    register_schemas("generate")
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("generate", overrides=["run=x", "decoding=greedy", "decoding.processors={ban: {banned_ids: [3, 4]}}"])
    decoding = OmegaConf.to_container(cfg.decoding)
    assert decoding["processors"] == {"ban": {"banned_ids": [3, 4]}}
    out = DECODERS.build(decoding).generate(model, [[1]], max_new_tokens=8).sequences[0]
    assert not {3, 4} & set(out)


def test_bad_processor_settings_are_named(plugin):
    with pytest.raises(LookupError, match="banlist"):
        DECODERS.build({"name": "greedy", "processors": ["banlist"]})
    with pytest.raises(ValueError, match="Did you mean 'banned_ids'"):
        DECODERS.build({"name": "greedy", "processors": {"ban": {"baned_ids": [1]}}})
    with pytest.raises(ValueError, match="both set by its setting"):
        DECODERS.build({"name": "sample", "top_k": 3, "processors": {"top_k": {"top_k": 5}}})


def test_the_scaffolds_processor_works_as_generated(tmp_path, monkeypatch, model):
    """`lstm-pipeline plugins new ... --group logits_processors` as written, switched on by name."""
    from lstm_pipeline.scaffold import main as scaffold

    assert scaffold(["zapper", "--group", "logits_processors", "--dir", str(tmp_path / "gen")]) in (0, None)
    pkg = next((tmp_path / "gen").iterdir())
    src = pkg / "src"
    module = next(p.name for p in src.iterdir() if p.is_dir() and not p.name.endswith(".egg-info"))
    site = tmp_path / "site"
    shutil.copytree(src / module, site / module)
    import tomllib

    eps = tomllib.loads((pkg / "pyproject.toml").read_text())["project"]["entry-points"]["lstm_pipeline.logits_processors"]
    name, target = next(iter(eps.items()))
    make_dist(site, pkg.name, f"[lstm_pipeline.logits_processors]\n{name} = {target}\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        plain = DECODERS.build({"name": "greedy"}).generate(model, [[1, 2]], max_new_tokens=5).sequences[0]
        factory_kwargs = {"banned_ids": plain[:1]}
        out = DECODERS.build({"name": "greedy", "processors": {name: factory_kwargs}}).generate(
            model, [[1, 2]], max_new_tokens=5).sequences[0]
        assert plain[0] not in out
    finally:
        for mod in [m for m in sys.modules if m.startswith(module)]:
            del sys.modules[mod]
