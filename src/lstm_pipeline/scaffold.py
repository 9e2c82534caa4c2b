"""``lstm-pipeline plugins new <name> --group <group>[:<component>] [--group ...] [--dir D]``: write a
plugin package skeleton.

The skeleton is a complete, installable distribution holding one or more components: a
``pyproject.toml`` with their entry points, a stub of each component with TODOs that already works
(a minimal real implementation, so the contract suite passes as generated) and writes out every
hook the plugin API lets it implement, a config file per component in the right Hydra group, a test
per component that reuses the contract suite of ``lstm_pipeline.testing``, and a README::

    lstm-pipeline plugins new sru --group cells --group decoders:top_a --group data_sources:sqlite
    pip install ./lstm-pipeline-sru
    pytest lstm-pipeline-sru/tests
    lstm-pipeline train model/cell=sru

A component is named after the package unless ``--group <group>:<component>`` names it. Names
already registered (built in or by an installed plugin) are refused.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

from .registry import API_VERSION

GROUPS = ("cells", "decoders", "data_sources", "tokenizers", "callbacks", "logits_processors")

# group -> (module name, class-name suffix, config group dir or None, (registry, contract suite) or None)
LAYOUT = {
    "cells": ("cell", "Cell", "model/cell", ("CELLS", "CellContract")),
    "decoders": ("decoder", "Decoder", "decoding", ("DECODERS", "DecoderContract")),
    "data_sources": ("source", "Source", "data", ("DATA_SOURCES", "DataSourceContract")),
    "tokenizers": ("tokenizer", "Tokenizer", "tokenizer", ("TOKENIZERS", "TokenizerContract")),
    "callbacks": ("callback", "Callback", "callbacks", None),
    "logits_processors": ("processor", "Processor", None, None),
}
#: group -> the registry attribute of lstm_pipeline.registry
REGISTRY = {"cells": "CELLS", "decoders": "DECODERS", "data_sources": "DATA_SOURCES", "tokenizers": "TOKENIZERS",
            "callbacks": "CALLBACKS", "logits_processors": "LOGITS_PROCESSORS"}

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class ScaffoldError(ValueError):
    pass


# -- component templates ($cls, $name) ---------------------------------------------------------
COMPONENT = {
    "cells": """\"\"\"$cls: a recurrent cell for lstm-pipeline (registered as model/cell=$name).

TODO: replace the minimal Elman (tanh) recurrence below with your cell. The hooks of
lstm_pipeline.cells.RecurrentCell (docs/plugins.md, "Cells"):

* ``__init__(input_size, hidden_size, num_layers=1, dropout=0.0, **your settings)``: the model
  passes the first four, the config file (conf/model/cell/$name.yaml) the rest;
* ``output_size`` (property): width of y; ``hidden_size`` unless your cell projects;
* ``state_batch_dims``: for each state tensor, the dimension that is the batch (reorder_state uses it);
* ``init_state(batch, device, dtype)``: the zero state, a tuple of tensors;
* ``forward(x (B, T, E), state or None) -> (y (B, T, output_size), state)``: training and prompts;
* ``step(x (B, E), state) -> (y (B, output_size), state)``: one token, for generation; it runs
  under torch.inference_mode() and must equal forward;
* ``reorder_state`` / ``detach_state``: inherited; override only for a state that is not tensors
  with a batch dimension.
Dropout (``self.dropout``) acts between stacked layers in training only.
\"\"\"
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lstm_pipeline.cells.base import RecurrentCell, State


class $cls(RecurrentCell):
    lstm_pipeline_api = "$api"
    state_batch_dims = (1,)  # h (L, B, H)

    # TODO: add your own settings as keyword arguments; the config file passes them
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        bound = 1.0 / math.sqrt(hidden_size)
        self.w_ih = nn.ParameterList(
            nn.Parameter(torch.empty(hidden_size, input_size if l == 0 else hidden_size).uniform_(-bound, bound))
            for l in range(num_layers))
        self.w_hh = nn.ParameterList(
            nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound)) for _ in range(num_layers))
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(hidden_size)) for _ in range(num_layers))

    @property
    def output_size(self) -> int:
        return self.hidden_size  # TODO: your projection's width if the cell projects its output

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return (torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype),)

    def _between_layers(self, y: Tensor) -> Tensor:
        return nn.functional.dropout(y, self.dropout, self.training)  # active in training only

    def _layer_step(self, l: int, x: Tensor, h: Tensor) -> Tensor:
        # TODO: your recurrence; x (B, E_l), h (B, H) -> new h (B, H)
        return torch.tanh(torch.addmm(self.bias[l], x, self.w_ih[l].t()) + h @ self.w_hh[l].t())

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        (h0,) = state  # (L, B, H)
        hs = []
        y = x  # (B, T, E)
        for l in range(self.num_layers):
            if l > 0:
                y = self._between_layers(y)
            h, outs = h0[l], []
            for t in range(y.size(1)):
                h = self._layer_step(l, y[:, t], h)
                outs.append(h)
            y = torch.stack(outs, 1)  # (B, T, H)
            hs.append(h)
        return y, (torch.stack(hs),)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (h0,) = state
        hs = []
        y = x  # (B, E)
        for l in range(self.num_layers):
            if l > 0:
                y = self._between_layers(y)
            y = self._layer_step(l, y, h0[l])
            hs.append(y)
        return y, (torch.stack(hs),)
""",
    "decoders": """\"\"\"$cls: a decoding strategy for lstm-pipeline (registered as decoding=$name).

TODO: replace the rule in ``select`` (here: the most likely token after a temperature, i.e.
greedy) with yours. The hooks of lstm_pipeline.generation.strategies.StepDecoding
(docs/plugins.md, "Decoders"):

* ``OWN``: your settings and their defaults; ``__init__`` is the base class's: it takes them plus
  the settings every strategy takes (repetition_penalty, no_repeat_ngram_size, ...: ``COMMON``),
  checks the names and stores them all in ``self.settings``;
* ``SAMPLES = True`` to take the sampling settings as well (temperature, top_k, top_p, ...);
* ``name()``: the name used in messages (the entry-point name);
* ``check()``: cross-setting checks, raising ValueError naming the setting;
* ``select(scores (B, V), generator) -> ids (B,)``: called once per generated token with the
  logits after the logits processors. ``generate`` (inherited) drives ``model.step`` (prompt
  consumed once, state carried) and scores every row with the model's own log-probabilities;
* ``streams`` / ``scores_are_logprob_sums``: leave True unless your own ``generate`` cannot.
\"\"\"
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lstm_pipeline.generation.strategies import StepDecoding


class $cls(StepDecoding):
    lstm_pipeline_api = "$api"
    #: TODO: your settings and their defaults (the config file sets them: decoding.temperature=0.8)
    OWN: dict[str, Any] = {"temperature": 1.0}

    @classmethod
    def name(cls) -> str:
        return "$name"

    def check(self) -> None:
        if not self.settings["temperature"] > 0:
            raise ValueError(f"decoding.temperature must be > 0, got {self.settings['temperature']}")

    def select(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        # TODO: your selection rule; scores (B, V) -> ids (B,)
        return (scores / self.settings["temperature"]).argmax(-1)
""",
    "data_sources": """\"\"\"$cls: a data source for lstm-pipeline (registered as data=$name).

TODO: read your data here. A data source is built from its config fields and returns a
``datasets.DatasetDict`` with the splits train, validation and test, text in ``text_column``.
This stub reads one plain-text file, one row per line (line breaks kept). Its hooks
(docs/plugins.md, "Data sources"):

* ``text_column``: the column holding the text;
* ``load() -> datasets.DatasetDict`` (or an ``IterableDatasetDict`` to stream);
* optional attributes the pipeline reads: ``eos_token`` (a token appended after every row when
  encoding, added to the vocabulary), ``document_separator`` (text appended to every row before
  tokenising), ``cache_dir`` (where the encoded ids are cached), ``num_proc`` (encoding processes).
You need not take the shared settings data.eos_token, data.document_separator, data.min_length,
data.streaming and data.cache_dir: lstm-pipeline applies those it is given for you.
\"\"\"
from __future__ import annotations

from pathlib import Path

import datasets

from lstm_pipeline.data.sources import DataError, contiguous_splits


class $cls:
    lstm_pipeline_api = "$api"
    text_column = "text"
    eos_token: str | None = None           # e.g. "<eos>"
    document_separator: str | None = None  # e.g. "\\n"

    def __init__(self, path: str, val_fraction: float = 0.05, test_fraction: float = 0.05):
        self.path = path
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def load(self) -> datasets.DatasetDict:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.path={self.path!r} is not a file. Point it at your text.")
        # TODO: clean or parse your format here
        rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if not rows:
            raise DataError(f"{path} is empty.")
        ds = datasets.Dataset.from_dict({self.text_column: rows})
        return contiguous_splits(ds, self.val_fraction, self.test_fraction)
""",
    "tokenizers": """\"\"\"$cls: a tokenizer for lstm-pipeline (registered as tokenizer=$name).

TODO: build your tokenizer here. A tokenizer is built from its config fields; ``train(texts)``
returns a trained HF ``tokenizers.Tokenizer`` (saved as plain JSON with the run); ``texts`` is an
iterator of strings or of lists of strings. This stub is a character vocabulary (a BPE model
without merges). Its hooks (docs/plugins.md, "Tokenizers"): ``lossless`` (decode(encode(t)) == t,
say it truthfully), ``needs_training`` (False: ``train(None)`` returns a ready tokenizer),
``deterministic`` (False if training twice may give different ids).
\"\"\"
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, trainers


class $cls:
    lstm_pipeline_api = "$api"
    lossless = True  # decode(encode(text)) == text for text made of characters seen in training
    needs_training = True
    deterministic = True

    def __init__(self, unk_token: str = "<unk>"):
        self.unk_token = unk_token

    def train(self, texts: Iterable[str]) -> Tokenizer:
        # TODO: your model, pre-tokenizer, normaliser and trainer
        tok = Tokenizer(models.BPE(unk_token=self.unk_token))
        tok.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(vocab_size=1, special_tokens=[self.unk_token], show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
""",
    "callbacks": '''"""$cls: a Lightning training callback for lstm-pipeline.

TODO: do your work in the hooks you need (see lightning.pytorch.callbacks.Callback). This stub
appends the training loss every ``every_n_steps`` optimiser steps to a file in the run directory.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L


class $cls(L.Callback):
    lstm_pipeline_api = "$api"

    def __init__(self, every_n_steps: int = 100, file: str = "$name.log"):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.file = file  # relative to the run directory

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        loss = trainer.callback_metrics.get("train_loss")
        with (Path(trainer.default_root_dir) / self.file).open("a") as f:
            f.write(f"step {step} train_loss {float(loss):.4f}\\n")
''',
    "logits_processors": '''"""$cls: a logits processor for lstm-pipeline.

TODO: replace the rule below. A processor is ``(history (B, t) long, logits (B, V)) -> logits``;
this stub forbids a fixed list of token ids (their logits become -inf).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class $cls:
    lstm_pipeline_api = "$api"

    def __init__(self, banned_ids: Sequence[int] = ()):
        self.banned_ids = list(banned_ids)

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if not self.banned_ids:
            return logits
        out = logits.clone()
        out[:, torch.tensor(self.banned_ids, device=logits.device)] = float("-inf")
        return out
''',
}

CONFIG = {
    "cells": "# $cls ($dist): lstm-pipeline train model/cell=$name\nname: $name\n# TODO: your settings\n",
    "decoders": "# $cls ($dist): lstm-pipeline generate run=<run dir> decoding=$name\nname: $name\n"
                "temperature: 1.0\n"
                "# the constraints every strategy takes (off values shown; see docs/generation.md)\n"
                "repetition_penalty: 1.0\nfrequency_penalty: 0.0\npresence_penalty: 0.0\nno_repeat_ngram_size: 0\n"
                "bad_words_ids: null\nmin_new_tokens: 0\nforced_end: false\n"
                "processors: null  # any registered logits processor by name: [name] or {name: {settings}}\n",
    "data_sources": "# $cls ($dist): lstm-pipeline train data=$name data.path=corpus.txt\nname: $name\npath: ???\n"
                    "val_fraction: 0.05\ntest_fraction: 0.05\n"
                    "# the data settings every source takes (lstm-pipeline applies them; off values shown)\n"
                    "eos_token: null           # token appended after every row, e.g. \"<eos>\"\n"
                    "document_separator: null  # text appended to every row before tokenising\n"
                    "min_length: 0             # drop rows with fewer characters\n"
                    "streaming: false          # IterableDataset, tokenised on the fly\n"
                    "cache_dir: null           # where encoded ids are cached\n",
    "tokenizers": "# $cls ($dist): lstm-pipeline train tokenizer=$name\nname: $name\nunk_token: <unk>\n",
    "callbacks": "# the default callbacks plus $cls ($dist): lstm-pipeline train callbacks=$name\n"
                 "defaults:\n  - default\n  - _self_\n$name:\n  name: $name\n  every_n_steps: 100\n",
}

# groups with a contract suite: the suite, the hook that builds a component, the registration
CONTRACT_TEST = """from lstm_pipeline.registry import $registry
from lstm_pipeline.testing import $contract
from $pkg.$module import $cls


class Test${cls}Contract($contract):
$hook

def test_registered():
    assert $registry.get("$name") is $cls
$extra"""

CONTRACT_HOOK = {
    "cells": """    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return $cls(input_size, hidden_size, num_layers, dropout)
""",
    "decoders": """    def make_decoder(self):
        return $cls()
""",
    "data_sources": """    def make_source(self, tmp_path):
        return $cls(str(corpus(tmp_path)))
""",
    "tokenizers": """    def make_tokenizer(self):
        return $cls()
""",
}

#: further tests of a group's generated package (after the contract suite)
CONTRACT_EXTRA = {
    "cells": "",
    "decoders": """

def test_takes_the_settings_every_strategy_takes():
    dec = DECODERS.build({"name": "$name", "temperature": 0.5, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2})
    assert dec.settings["repetition_penalty"] == 1.3 and len(dec.processors()) == 2
""",
    "data_sources": """

def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i} of a small corpus\\n" for i in range(100)) + "x\\n" * 20)
    return path


def test_takes_the_data_settings_every_source_takes(tmp_path):
    source = DATA_SOURCES.build({"name": "$name", "path": str(corpus(tmp_path)), "min_length": 5,
                                 "eos_token": "<eos>", "streaming": False})
    assert source.eos_token == "<eos>"
    dd = source.load()
    rows = [t for split in dd.values() for t in split[source.text_column]]
    assert len(rows) == 100 and all(len(t.strip()) >= 5 for t in rows)  # the 20 short rows dropped
""",
    "tokenizers": "",
}

# the other groups' tests
TESTS = {
    "callbacks": '''"""Runs a tiny real training with the callback selected by its config (callbacks=$name)."""
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.data.sources import bundled_corpus
from lstm_pipeline.registry import CALLBACKS
from lstm_pipeline.training.train import train
from $pkg.$module import $cls


def test_registered():
    assert CALLBACKS.get("$name") is $cls


def test_runs_in_training(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(bundled_corpus().read_text()[:4000])
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=text", f"data.path={corpus}", "callbacks=$name", "callbacks.$name.every_n_steps=2",
            "model.hidden_size=8", "model.embedding_dim=8", "model.num_layers=1", "batching.batch_size=2",
            "batching.bptt=8", "batching.eval_batch_size=2", "trainer.max_steps=4", "+trainer.limit_val_batches=1",
            "trainer.enable_progress_bar=false", "logger=csv", "sample.max_new_tokens=0"])
    cfg.run_dir = str(tmp_path / "run")
    train(cfg)
    lines = (tmp_path / "run" / "$name.log").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["2", "4"]
''',
    "logits_processors": '''import torch

from lstm_pipeline.registry import LOGITS_PROCESSORS
from $pkg.$module import $cls


def test_banned_ids_get_minus_infinity_and_others_are_untouched():
    logits = torch.randn(2, 6)
    out = $cls(banned_ids=[1, 4])(torch.zeros(2, 0, dtype=torch.long), logits)
    assert torch.isneginf(out[:, [1, 4]]).all()
    keep = [0, 2, 3, 5]
    assert torch.equal(out[:, keep], logits[:, keep])


def test_registered():
    assert LOGITS_PROCESSORS.get("$name") is $cls
''',
}

PYPROJECT = """[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "TODO: one line about $summary, a plugin for lstm-pipeline."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["lstm-pipeline>=0.1,<2"]

[project.optional-dependencies]
test = ["pytest>=7"]
$entry_points
[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
$pkg = ["conf/**/*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """# $dist

A plugin for [lstm-pipeline](https://example.invalid/lstm-pipeline), written for plugin API $api:

$components

```bash
pip install .                      # registers the entry points
pytest tests                       # the lstm_pipeline.testing contract suites and your own tests
lstm-pipeline plugins --check      # lists the components and imports them
$usage
```

TODO: describe what it does and its settings.
"""

USAGE = {
    "cells": "lstm-pipeline train model/cell=$name",
    "decoders": "lstm-pipeline generate run=<run dir> decoding=$name",
    "data_sources": "lstm-pipeline train data=$name data.path=corpus.txt",
    "tokenizers": "lstm-pipeline train tokenizer=$name",
    "callbacks": "lstm-pipeline train callbacks=$name",
    "logits_processors": "# a processor for decoders: LOGITS_PROCESSORS.get(\"$name\")(banned_ids=[...])",
}

KIND = {"cells": "cell", "decoders": "decoder", "data_sources": "data source", "tokenizers": "tokenizer",
        "callbacks": "callback", "logits_processors": "logits processor"}


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_.]+", text) if p)


def names_for(name: str) -> dict[str, str]:
    """The names of a package: its distribution (``lstm-pipeline-<name>``, normalised as pip does:
    lowercase, ``-`` between words), import package (``lstm_pipeline_<name>``), default component
    name (``<name>`` with ``_`` between words) and CamelCase stem."""
    if not _NAME.match(name or ""):
        raise ScaffoldError(f"Plugin name {name!r} must start with a lowercase letter and hold only lowercase "
                            f"letters, digits, '-' and '_' (e.g. 'peephole' or 'my-cell').")
    base = re.sub(r"^lstm[-_]pipeline[-_]", "", name)
    words = [w for w in re.split(r"[-_]+", base) if w]
    if not words or base == name and name in ("lstm-pipeline", "lstm_pipeline"):
        raise ScaffoldError("Give the plugin a name after 'lstm-pipeline-'.")
    return {"dist": "lstm-pipeline-" + "-".join(words), "pkg": "lstm_pipeline_" + "_".join(words),
            "name": "_".join(words), "camel": _camel(base)}


def class_name(component: str, group: str) -> str:
    """CamelCase class name of ``component``, ending in the group's word once (``my_cell`` ->
    ``MyCell``, ``sru`` -> ``SruCell``, ``ebook_sources`` -> ``EbookSource``)."""
    suffix = LAYOUT[group][1]
    camel = _camel(component)
    if camel.lower().endswith(suffix.lower()):
        return camel[: len(camel) - len(suffix)] + suffix
    if camel.lower().endswith(suffix.lower() + "s"):
        return camel[: len(camel) - len(suffix) - 1] + suffix
    return camel + suffix


@dataclass(frozen=True)
class Component:
    group: str
    name: str      # entry-point name (what a config selects)
    cls: str
    module: str    # module in the package


def components_for(name: str, groups) -> list[Component]:
    """The components of a package: ``groups`` holds ``"<group>"`` (a component named after the
    package) or ``"<group>:<component name>"`` items."""
    if isinstance(groups, str):
        groups = [groups]
    if not groups:
        raise ScaffoldError(f"Give at least one --group: {', '.join(GROUPS)}.")
    n = names_for(name)
    specs = []
    for item in groups:
        group, _, comp = str(item).partition(":")
        if group not in GROUPS:
            raise ScaffoldError(f"Unknown group {group!r}. Groups: {', '.join(GROUPS)}.")
        comp = comp or n["name"]
        if not re.match(r"^[a-z][a-z0-9_-]*$", comp):
            raise ScaffoldError(f"Component name {comp!r} (--group {item}) must start with a lowercase letter and "
                                f"hold only lowercase letters, digits, '-' and '_'.")
        specs.append((group, comp.replace("-", "_")))
    if len(set(specs)) != len(specs):
        dup = next(x for x in specs if specs.count(x) > 1)
        raise ScaffoldError(f"The {KIND[dup[0]]} '{dup[1]}' is given twice.")
    out, classes = [], set()
    for group, comp in specs:
        module = LAYOUT[group][0]
        if sum(g == group for g, _ in specs) > 1:
            module = f"{module}_{comp}"
        cls = class_name(comp, group)
        if cls in classes:
            raise ScaffoldError(f"Two components would both be the class {cls}: name one of them differently.")
        classes.add(cls)
        out.append(Component(group, comp, cls, module))
    return out


def check_names_free(components) -> None:
    """Refuse a component whose name is already registered in its group (by lstm-pipeline or an
    installed plugin), or whose config file would clash with one of that config group's files."""
    from . import registry

    for c in components:
        reg = getattr(registry, REGISTRY[c.group])
        entries = reg.entries()
        if c.name in entries:
            raise ScaffoldError(
                f"The {KIND[c.group]} '{c.name}' is already registered by the distribution "
                f"'{entries[c.name].distribution}': two distributions registering one name make it unusable. "
                f"Choose another name (e.g. --group {c.group}:my_{c.name}).")
        config_dir = LAYOUT[c.group][2]
        if config_dir and c.name in registry.config_options(config_dir):
            raise ScaffoldError(
                f"The config group '{config_dir}' already has a file '{c.name}.yaml' (lstm-pipeline or an installed "
                f"plugin): choose another name for the {KIND[c.group]} (e.g. --group {c.group}:my_{c.name}).")


def render(name: str, groups) -> dict[str, str]:
    """The files of the skeleton: relative path -> text. ``groups``: a group, or a list of
    ``"<group>"`` / ``"<group>:<component name>"``."""
    n = names_for(name)
    comps = components_for(name, groups)
    files: dict[str, str] = {}
    eps: dict[str, list[str]] = {}
    has_config = False
    usage, listing = [], []
    for c in comps:
        config_dir = LAYOUT[c.group][2]
        contract = LAYOUT[c.group][3]
        values = dict(n, name=c.name, cls=c.cls, module=c.module, group=c.group, api=API_VERSION)
        eps.setdefault(c.group, []).append(f'{c.name} = "{n["pkg"]}.{c.module}:{c.cls}"')
        files[f"src/{n['pkg']}/{c.module}.py"] = Template(COMPONENT[c.group]).substitute(values)
        test_path = f"tests/test_{c.name}_{LAYOUT[c.group][0]}.py"
        if contract:
            files[test_path] = Template(CONTRACT_TEST).substitute(
                values, registry=contract[0], contract=contract[1],
                hook=Template(CONTRACT_HOOK[c.group]).substitute(values),
                extra=Template(CONTRACT_EXTRA[c.group]).substitute(values))
        else:
            files[test_path] = Template(TESTS[c.group]).substitute(values)
        if config_dir:
            has_config = True
            files[f"src/{n['pkg']}/conf/{config_dir}/{c.name}.yaml"] = Template(CONFIG[c.group]).substitute(values)
        usage.append(Template(USAGE[c.group]).substitute(values))
        listing.append(f"* `{c.cls}`: a {KIND[c.group]}, entry point `lstm_pipeline.{c.group}:{c.name}`")
    entry_points = "".join(f'\n[project.entry-points."lstm_pipeline.{g}"]\n' + "\n".join(lines) + "\n"
                           for g, lines in eps.items())
    if has_config:
        entry_points += f'\n[project.entry-points."lstm_pipeline.conf"]\n{n["dist"]} = "{n["pkg"]}.conf"\n'
        files[f"src/{n['pkg']}/conf/__init__.py"] = ""
    summary = ", ".join(c.cls for c in comps)
    values = dict(n, api=API_VERSION, summary=summary, entry_points=entry_points,
                  components="\n".join(listing), usage="\n".join(usage))
    files["pyproject.toml"] = Template(PYPROJECT).substitute(values)
    files["README.md"] = Template(README).substitute(values)
    files[f"src/{n['pkg']}/__init__.py"] = (
        f'"""{summary}: components for lstm-pipeline. Keep this module light (the config package under it\n'
        f'is imported by every lstm-pipeline command)."""\n\n#: the lstm-pipeline plugin API this package is '
        f'written for\nLSTM_PIPELINE_API = "{API_VERSION}"\n')
    return dict(sorted(files.items()))


def write(name: str, groups, directory: str | Path = ".") -> Path:
    """Write the package into ``directory``/<distribution name>; return that folder. Raises
    :class:`ScaffoldError` for bad or already registered names and an existing folder."""
    files = render(name, groups)
    check_names_free(components_for(name, groups))
    root = Path(directory) / names_for(name)["dist"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists: choose another name or --dir, or remove it first.")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lstm-pipeline plugins new",
        description="Write a plugin package skeleton (one or more components) that installs and passes its tests "
                    "as generated.",
        epilog="Example: lstm-pipeline plugins new sru --group cells --group decoders:top_a "
               "--group data_sources:sqlite")
    parser.add_argument("name", help="package name, e.g. 'sru' (the distribution is lstm-pipeline-sru, the "
                                     "import package lstm_pipeline_sru)")
    parser.add_argument("--group", required=True, action="append", metavar="GROUP[:COMPONENT]",
                        help=f"add a component to this extension point, one of {', '.join(GROUPS)}; named "
                             f"after the package unless ':<component name>' follows (repeatable)")
    parser.add_argument("--dir", default=".", help="where to create the package directory (default: here)")
    ns = parser.parse_args(args)
    for item in ns.group:
        if item.partition(":")[0] not in GROUPS:
            parser.error(f"argument --group: invalid choice: '{item.partition(':')[0]}' (choose from "
                         f"{', '.join(GROUPS)})")
    try:
        root = write(ns.name, ns.group, ns.dir)
    except ScaffoldError as exc:
        print(f"lstm-pipeline plugins new: error: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {root}:")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(root)}")
    print(f"\nNext:\n  pip install -e {root}\n  pytest {root / 'tests'}")
    return 0
