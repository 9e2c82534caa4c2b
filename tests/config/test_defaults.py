"""One source of defaults: a component built from Python by its name and the same name selected on
the command line (its config file composed by Hydra) are the same object with the same settings."""
import inspect
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lstm_pipeline.config.schema import EvaluateJob, ExportJob, GenerateJob, PlotJob, PushJob, TrainJob, component_defaults, register_schemas
from lstm_pipeline.models.lm import RecurrentLM, complete_cell_config
from lstm_pipeline.registry import CELLS, DECODERS, TOKENIZERS

CONF = Path(__file__).resolve().parents[2] / "src" / "lstm_pipeline" / "conf"


def _compose(name, overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=False)


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("name", [n for n in _options("decoding") if n in DECODERS])
def test_decoder_from_python_equals_decoder_from_the_command_line(name):
    cli = DECODERS.build(_compose("generate", [f"decoding={name}", "run=x"])["decoding"])
    py = DECODERS.build({"name": name})
    assert type(cli) is type(py) and cli.settings == py.settings


def test_sample_means_the_same_temperature_everywhere():
    """Was: DECODERS.build({'name': 'sample'}) sampled at 1.0, decoding=sample at 0.8."""
    assert _compose("generate", ["decoding=sample", "run=x"])["decoding"]["temperature"] == 1.0
    assert DECODERS.build({"name": "sample"}).settings["temperature"] == 1.0
    assert _compose("generate", ["decoding=sample", "decoding.temperature=0.7", "run=x"])["decoding"]["temperature"] == 0.7


@pytest.mark.parametrize("name", [n for n in _options("model/cell") if n in CELLS])
def test_cell_from_python_equals_cell_from_the_command_line(name):
    cli = _compose("train", [f"model/cell={name}"])["model"]["cell"]
    assert complete_cell_config(cli) == complete_cell_config({"name": name}) == component_defaults("model/cell", name)
    a = CELLS.build(cli, input_size=4, hidden_size=6)
    b = CELLS.build({"name": name}, input_size=4, hidden_size=6)
    assert repr(a) == repr(b)


@pytest.mark.parametrize("name", [n for n in _options("tokenizer") if n in TOKENIZERS and n != "pretrained"])
def test_tokenizer_from_python_equals_tokenizer_from_the_command_line(name):
    cli = TOKENIZERS.build(_compose("train", [f"tokenizer={name}"])["tokenizer"])
    py = TOKENIZERS.build({"name": name})
    assert vars(cli) == vars(py)


def test_the_default_model_is_recurrentlm_with_its_own_defaults():
    """Was: RecurrentLM defaulted to embeddings 256 and dropout 0.0, conf/model/lstm_lm.yaml to 64 and 0.1.
    (The default run's recipe, conf/experiment/default.yaml, sets its own values on purpose: without it,
    experiment=none, the model group adds nothing.)"""
    node = _compose("train", ["experiment=none"])["model"]
    assert RecurrentLM(50, **node).config == RecurrentLM(50).config
    assert node["embedding_dim"] == inspect.signature(RecurrentLM).parameters["embedding_dim"].default


@pytest.mark.parametrize("command,schema", [("train", TrainJob), ("generate", GenerateJob), ("evaluate", EvaluateJob),
                                            ("export", ExportJob), ("plot", PlotJob), ("push", PushJob)])
def test_job_files_restate_nothing_of_their_schema(command, schema):
    """A command's YAML holds defaults lists, interpolations and Hydra's settings; the values are the schema's."""
    node = yaml.safe_load((CONF / f"{command}.yaml").read_text())
    restated = {k for k in node if k not in ("defaults", "hydra") and not str(node[k]).startswith("${")}
    assert not restated, f"conf/{command}.yaml restates {restated}: the defaults live in config.py's {schema.__name__}"


@pytest.mark.parametrize("group", ["decoding", "model/cell", "tokenizer", "data"])
def test_component_files_restate_no_default(group):
    """A component's config file holds only what differs from the component's own defaults."""
    for f in sorted((CONF / group).glob("*.yaml")):
        node = yaml.safe_load(f.read_text())
        name = node.get("name")
        try:
            defaults = component_defaults(group, name)
        except Exception:  # not a built-in (a plugin's file) or a source with required settings only
            continue
        same = {k for k, v in node.items() if k not in ("name", "defaults") and k in defaults and defaults[k] == v}
        assert not same, f"{f.relative_to(CONF)} restates the defaults of {same}"


def test_generation_config_reads_the_decoder_defaults(tmp_path):
    """hub.py used to guess top_p 0.9 for nucleus, 1.0 for sample, temperature 1.0: now it asks the decoder."""
    from lstm_pipeline.artifacts.model_dir import generation_config

    assert generation_config({"name": "nucleus"}, 0)["top_p"] == DECODERS.build({"name": "nucleus"}).settings["top_p"]
    assert generation_config({"name": "top_k"}, 0)["top_k"] == DECODERS.build({"name": "top_k"}).settings["top_k"]
    assert generation_config({"name": "beam"}, 0)["num_beams"] == DECODERS.build({"name": "beam"}).settings["num_beams"]
