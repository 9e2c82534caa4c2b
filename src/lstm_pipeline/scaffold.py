"""``lstm-pipeline plugins new <name> --group <group> [--dir D]``: write a plugin package skeleton.

The skeleton is a complete, installable distribution: ``pyproject.toml`` with the entry point,
a stub component with TODOs that already works (a minimal real implementation, so the contract
suite passes as generated), a config file in the right Hydra group, a test that reuses the
contract suite of ``lstm_pipeline.testing`` and a README::

    lstm-pipeline plugins new peephole --group cells
    pip install ./lstm-pipeline-peephole
    pytest lstm-pipeline-peephole/tests
    lstm-pipeline train model/cell=peephole
"""
from __future__ import annotations

import argparse
import re
import sys
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

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class ScaffoldError(ValueError):
    pass


# -- component templates ($cls, $name) ---------------------------------------------------------
COMPONENT = {
    "cells": '''"""$cls: a recurrent cell for lstm-pipeline.

TODO: replace the minimal Elman (tanh) recurrence below with your cell. Keep the contract of
lstm_pipeline.cells.RecurrentCell: forward(x (B, T, E), state) -> (y (B, T, H), state),
step(x (B, E), state) for generation, a state tuple with the batch on ``state_batch_dims``.
"""
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
        self.drop = nn.Dropout(dropout)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return (torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype),)

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
                y = self.drop(y)
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
                y = self.drop(y)
            y = self._layer_step(l, y, h0[l])
            hs.append(y)
        return y, (torch.stack(hs),)
''',
    "decoders": '''"""$cls: a decoding strategy for lstm-pipeline.

TODO: replace the rule in ``select`` (here: the most likely token, i.e. greedy) with yours.
``StepDecoding.generate`` drives ``model.step`` (prompt consumed once, state carried) and
calls ``select(scores (B, V), generator) -> next ids (B,)`` once per generated token.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lstm_pipeline.generation.strategies import StepDecoding


class $cls(StepDecoding):
    lstm_pipeline_api = "$api"

    # TODO: your settings as keyword arguments (the config file passes them)
    def __init__(self, temperature: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"decoding.temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def select(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        # TODO: your selection rule; scores (B, V) -> ids (B,)
        return (scores / self.temperature).argmax(-1)
''',
    "data_sources": '''"""$cls: a data source for lstm-pipeline.

TODO: read your data here. A data source is built from its config fields and returns a
``datasets.DatasetDict`` with the splits train, validation and test, text in ``text_column``.
This stub reads one plain-text file, one row per line (line breaks kept).
"""
from __future__ import annotations

from pathlib import Path

import datasets

from lstm_pipeline.data.sources import DataError, contiguous_splits


class $cls:
    lstm_pipeline_api = "$api"
    text_column = "text"

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
''',
    "tokenizers": '''"""$cls: a tokenizer for lstm-pipeline.

TODO: build your tokenizer here. A tokenizer is built from its config fields; ``train(texts)``
returns a trained HF ``tokenizers.Tokenizer`` (saved as plain JSON with the run). This stub is a
character vocabulary (a BPE model without merges). Set ``lossless`` truthfully.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, trainers


class $cls:
    lstm_pipeline_api = "$api"
    lossless = True  # decode(encode(text)) == text for text made of characters seen in training

    def __init__(self, unk_token: str = "<unk>"):
        self.unk_token = unk_token

    def train(self, texts: Iterable[str]) -> Tokenizer:
        # TODO: your model, pre-tokenizer, normaliser and trainer
        tok = Tokenizer(models.BPE(unk_token=self.unk_token))
        tok.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(vocab_size=1, special_tokens=[self.unk_token], show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
''',
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
    "cells": "# $cls ($dist)\nname: $name\n",
    "decoders": "# $cls ($dist)\nname: $name\ntemperature: 1.0\n",
    "data_sources": "# $cls ($dist): lstm-pipeline train data=$name data.path=corpus.txt\nname: $name\npath: ???\n"
                    "val_fraction: 0.05\ntest_fraction: 0.05\n",
    "tokenizers": "# $cls ($dist)\nname: $name\nunk_token: <unk>\n",
    "callbacks": "# the default callbacks plus $cls ($dist): lstm-pipeline train callbacks=$name\n"
                 "defaults:\n  - default\n  - _self_\n$name:\n  name: $name\n  every_n_steps: 100\n",
}

# groups with a contract suite: the suite, the hook that builds a component, the registration
CONTRACT_TEST = '''from lstm_pipeline.registry import $registry
from lstm_pipeline.testing import $contract
from $pkg.$module import $cls


class Test${cls}Contract($contract):
$hook

def test_registered():
    assert $registry.get("$name") is $cls
'''

CONTRACT_HOOK = {
    "cells": '''    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return $cls(input_size, hidden_size, num_layers, dropout)
''',
    "decoders": '''    def make_decoder(self):
        return $cls()
''',
    "data_sources": '''    def make_source(self, tmp_path):
        path = tmp_path / "corpus.txt"
        path.write_text("".join(f"line {i} of a small corpus\\n" for i in range(100)))
        return $cls(str(path))
''',
    "tokenizers": '''    def make_tokenizer(self):
        return $cls()
''',
}

# the other groups' tests
TESTS = {
    "callbacks": '''"""Runs a tiny real training with the callback selected by its config (callbacks=$name)."""
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config import register_schemas
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

PYPROJECT = '''[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "TODO: one line about $cls, a plugin for lstm-pipeline."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["lstm-pipeline>=0.1,<2"]

[project.optional-dependencies]
test = ["pytest>=7"]

[project.entry-points."lstm_pipeline.$group"]
$name = "$pkg.$module:$cls"
$conf_entry
[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
$pkg = ["conf/**/*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''# $dist

$cls, a `$group` plugin for [lstm-pipeline](https://example.invalid/lstm-pipeline), written for plugin API $api.

```bash
pip install .                      # registers the entry point lstm_pipeline.$group:$name
pytest tests                       # the lstm_pipeline.testing contract suite and your own tests
lstm-pipeline plugins --check      # lists $name and imports it
$usage
```

TODO: describe what it does and its settings.
'''

USAGE = {
    "cells": "lstm-pipeline train model/cell=$name",
    "decoders": "lstm-pipeline generate run=<run dir> decoding=$name",
    "data_sources": "lstm-pipeline train data=$name data.path=corpus.txt",
    "tokenizers": "lstm-pipeline train tokenizer=$name",
    "callbacks": "lstm-pipeline train callbacks=$name",
    "logits_processors": "# used by decoding strategies: LOGITS_PROCESSORS.get(\"$name\")(banned_ids=[...])",
}


def names_for(name: str) -> dict[str, str]:
    if not _NAME.match(name):
        raise ScaffoldError(f"Plugin name {name!r} must start with a lowercase letter and hold only lowercase "
                            f"letters, digits, '-' and '_' (e.g. 'peephole' or 'my-cell').")
    base = name[len("lstm-pipeline-"):] if name.startswith("lstm-pipeline-") else name
    if not base:
        raise ScaffoldError("Give the plugin a name after 'lstm-pipeline-'.")
    component = base.replace("-", "_")
    return {"dist": f"lstm-pipeline-{base}", "pkg": f"lstm_pipeline_{component}", "name": component,
            "camel": "".join(p.capitalize() for p in re.split(r"[-_]", base) if p)}


def render(name: str, group: str) -> dict[str, str]:
    """The files of the skeleton: relative path -> text."""
    if group not in GROUPS:
        raise ScaffoldError(f"Unknown group {group!r}. Groups: {', '.join(GROUPS)}.")
    n = names_for(name)
    module, suffix, config_dir, contract = LAYOUT[group]
    cls = n["camel"] + suffix
    conf_entry = (f'\n[project.entry-points."lstm_pipeline.conf"]\n{n["dist"]} = "{n["pkg"]}.conf"\n'
                  if config_dir else "")
    values = dict(n, cls=cls, module=module, group=group, api=API_VERSION, conf_entry=conf_entry)
    values["usage"] = Template(USAGE[group]).substitute(values)
    files = {
        "pyproject.toml": Template(PYPROJECT).substitute(values),
        "README.md": Template(README).substitute(values),
        f"src/{n['pkg']}/__init__.py": f'"""{cls} for lstm-pipeline."""\n\n#: the lstm-pipeline plugin API this '
                                       f'package is written for\nLSTM_PIPELINE_API = "{API_VERSION}"\n',
        f"src/{n['pkg']}/{module}.py": Template(COMPONENT[group]).substitute(values),
        f"tests/test_{n['name']}.py": (
            Template(CONTRACT_TEST).substitute(values, registry=contract[0], contract=contract[1],
                                               hook=Template(CONTRACT_HOOK[group]).substitute(values))
            if contract else Template(TESTS[group]).substitute(values)),
    }
    if config_dir:
        files[f"src/{n['pkg']}/conf/__init__.py"] = ""
        files[f"src/{n['pkg']}/conf/{config_dir}/{n['name']}.yaml"] = Template(CONFIG[group]).substitute(values)
    return files


def write(name: str, group: str, directory: str | Path = ".") -> Path:
    files = render(name, group)
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
        description="Write a plugin package skeleton that installs and passes its tests as generated.")
    parser.add_argument("name", help="plugin name, e.g. 'peephole' (the distribution is lstm-pipeline-<name>)")
    parser.add_argument("--group", required=True, choices=GROUPS, help="the extension point it adds to")
    parser.add_argument("--dir", default=".", help="where to create the package directory (default: here)")
    ns = parser.parse_args(args)
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
