"""Every registered component passes its contract suite from ``lstm_pipeline.testing``.

The names come from the registries (entry points), so components added later, built in or by an
installed plugin, are covered without editing this file. Each is built from the config file it
ships (``model/cell/<name>.yaml`` ...) when there is one, else from its defaults."""
import pytest

from lstm_pipeline.registry import CELLS, DATA_SOURCES, DECODERS, TOKENIZERS
from lstm_pipeline.testing import (CellContract, DataSourceContract, DecoderContract, TokenizerContract,
                                   shipped_config)


def node_for(registry, name: str) -> dict:
    node = shipped_config(registry.config_group, name) or {"name": name}
    node["name"] = name
    return node


class TestCellContract(CellContract):
    @pytest.fixture(autouse=True, params=CELLS.names())
    def component(self, request):
        self.node = node_for(CELLS, request.param)

    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return CELLS.build(self.node, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                           dropout=dropout)


class TestDecoderContract(DecoderContract):
    @pytest.fixture(autouse=True, params=DECODERS.names())
    def component(self, request):
        self.node = node_for(DECODERS, request.param)

    def make_decoder(self):
        return DECODERS.build(self.node)


class TestTokenizerContract(TokenizerContract):
    @pytest.fixture(autouse=True, params=TOKENIZERS.names())
    def component(self, request, tmp_path_factory):
        self.node = node_for(TOKENIZERS, request.param)
        from lstm_pipeline.config.schema import component_defaults

        if "vocab_size" in {**component_defaults("tokenizer", request.param), **self.node}:
            # the default sizes (8000...) exceed what the contract's small text allows
            self.node["vocab_size"] = {"word": 30}.get(request.param, 60)
        if self.node.get("path") == "???":  # pretrained: any tokenizer.json, here a trained char one
            path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
            TOKENIZERS.build({"name": "char"}).train(["a small text to learn characters from\n"]).save(str(path))
            self.node["path"] = str(path)

    def make_tokenizer(self):
        return TOKENIZERS.build(self.node)


SAMPLE_TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))


class TestDataSourceContract(DataSourceContract):
    @pytest.fixture(autouse=True, params=DATA_SOURCES.names())
    def component(self, request):
        self.node = node_for(DATA_SOURCES, request.param)

    def make_source(self, tmp_path):
        node = dict(self.node)
        # sources that read files get a small one of ours (so the suite never needs the network)
        corpus = tmp_path / "data" / "corpus.txt"
        corpus.parent.mkdir(exist_ok=True)
        corpus.write_text(SAMPLE_TEXT)
        if node["name"] == "disk":  # a dataset written by save_to_disk
            import datasets

            if not (tmp_path / "ds").exists():
                datasets.Dataset.from_dict({"text": SAMPLE_TEXT.splitlines(keepends=True)}).save_to_disk(tmp_path / "ds")
            node["path"] = str(tmp_path / "ds")
        elif node["name"] == "hub":  # load_dataset on a local directory, as on a Hub repo
            node["path"] = str(corpus.parent)
        for key in ("path", "data_dir", "directory"):
            if node.get(key) == "???":
                node[key] = str(corpus) if key == "path" else str(corpus.parent)
        missing = [k for k, v in node.items() if v == "???"]
        if missing:
            pytest.skip(f"data source '{node['name']}' needs {missing}; give it its own contract test")
        return DATA_SOURCES.build(node)
