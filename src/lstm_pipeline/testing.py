"""Contract test suites that every component (built-in or plugin) passes.

Each suite is a pytest test class with one hook that builds the component under test. A plugin's
tests reuse a suite by subclassing it and implementing the hook::

    from lstm_pipeline.testing import CellContract
    from lstm_pipeline_mogrifier.cell import MogrifierLSTM

    class TestMogrifierContract(CellContract):
        def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
            return MogrifierLSTM(input_size, hidden_size, num_layers, dropout, rounds=5)

pytest collects the inherited ``test_*`` methods of the subclass (the suites' own names do not
start with ``Test``, so they are not collected where they are imported). The class attributes
(sizes, tolerances, sample texts) may be overridden. The suites need only ``pytest`` and ``torch``.

* :class:`CellContract` (hook ``make_cell``): shapes, ``init_state``, state carry (two halves with
  the state carried == one long sequence), ``step`` == ``forward``, ``step`` under
  ``torch.inference_mode()`` / ``torch.no_grad()`` (the path generation takes: prompt through
  ``forward``, then ``step``) == ``forward`` with autograd on, gradient flow, ``reorder_state``,
  dropout active in training and off in eval, API declared.
* :class:`DecoderContract` (hook ``make_decoder``): lengths and id ranges, seeded determinism,
  ragged and empty prompts, stopping at the end-of-text token, scores are the model's own
  log-probabilities (on a model whose distributions are peaked, so that scores taken from the
  filtered/processed distribution differ), streaming.
* :class:`DataSourceContract` (hook ``make_source(tmp_path)``): ``train``/``validation``/``test``
  splits of strings in ``text_column``, non-empty train, deterministic loading.
* :class:`TokenizerContract` (hook ``make_tokenizer``): trains a ``tokenizers.Tokenizer``; ids in
  range; save/load round trip; deterministic training; lossless round trip when it says so.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import pytest
import torch

from .registry import API_VERSION, api_compatible, config_options, declared_api, shipped_config

__all__ = ["CellContract", "DecoderContract", "DataSourceContract", "TokenizerContract", "ThrowawayEnv",
           "config_options", "shipped_config"]


def _assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    assert diff <= atol, f"{what}: max abs difference {diff:.3e} > {atol:.1e}"


def _assert_api(obj: Any, what: str) -> None:
    wanted = declared_api(obj)
    assert wanted is not None, (
        f"{what} declares no plugin API: set the class attribute lstm_pipeline_api = \"{API_VERSION}\" "
        f"(or LSTM_PIPELINE_API = \"{API_VERSION}\" in its package)")
    assert api_compatible(wanted), f"{what} declares API {wanted}; this lstm-pipeline provides {API_VERSION}"


# ------------------------------------------------------------------------------------------
class CellContract:
    """The cell contract of ``lstm_pipeline.cells.base.RecurrentCell``."""

    input_size = 5
    hidden_size = 8
    num_layers = 2
    batch = 3
    seq_len = 6
    #: the suite runs in float64 so that equalities hold to ``atol``
    dtype = torch.float64
    atol = 1e-8

    def make_cell(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        """Return the cell under test, built with these sizes (and dropout between layers)."""
        raise NotImplementedError("implement make_cell(input_size, hidden_size, num_layers, dropout=0.0)")

    # -- helpers ----------------------------------------------------------------------------
    def _cell(self, num_layers: int | None = None, dropout: float = 0.0, seed: int = 0):
        torch.manual_seed(seed)
        cell = self.make_cell(self.input_size, self.hidden_size, self.num_layers if num_layers is None else num_layers,
                              dropout=dropout)
        return cell.to(self.dtype).eval()

    def _x(self, batch: int | None = None, seq_len: int | None = None, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(batch or self.batch, seq_len or self.seq_len, self.input_size, generator=g, dtype=self.dtype)

    # -- tests ------------------------------------------------------------------------------
    def test_is_a_recurrent_cell_with_api(self):
        from .cells.base import RecurrentCell

        cell = self._cell()
        assert isinstance(cell, RecurrentCell), f"{type(cell).__name__} must subclass lstm_pipeline.cells.RecurrentCell"
        _assert_api(type(cell), type(cell).__name__)
        assert cell.input_size == self.input_size and cell.hidden_size == self.hidden_size
        assert cell.num_layers == self.num_layers

    def test_forward_shapes_and_state(self):
        cell = self._cell()
        x = self._x()
        y, state = cell(x, None)
        assert y.shape == (self.batch, self.seq_len, cell.output_size), "y must be (B, T, output_size)"
        assert y.dtype == self.dtype
        assert isinstance(state, tuple) and state and all(isinstance(s, torch.Tensor) for s in state), \
            "the state must be a non-empty tuple of tensors"
        init = cell.init_state(self.batch, device=x.device, dtype=self.dtype)
        assert isinstance(init, tuple) and len(init) == len(state)
        for s0, s1, d in zip(init, state, cell._batch_dims(state)):
            assert s0.shape == s1.shape, "init_state must have the shapes forward returns"
            assert s0.dtype == self.dtype
            assert s0.size(d) == self.batch, f"state_batch_dims says dim {d} is the batch"
        assert all(bool((s == 0).all()) for s in init), "init_state is the zero state"

    def test_none_state_equals_init_state(self):
        cell = self._cell()
        x = self._x()
        y0, s0 = cell(x, None)
        y1, s1 = cell(x, cell.init_state(self.batch, dtype=self.dtype))
        _assert_close(y0, y1, self.atol, "forward(x, None) vs forward(x, init_state)")

    def test_state_carry_two_halves_equal_one_sequence(self):
        cell = self._cell()
        x = self._x(seq_len=2 * self.seq_len)
        y, state = cell(x, None)
        y1, s1 = cell(x[:, : self.seq_len], None)
        y2, s2 = cell(x[:, self.seq_len:], s1)
        _assert_close(torch.cat([y1, y2], 1), y, self.atol, "outputs with the state carried across halves")
        for a, b in zip(s2, state):
            _assert_close(a, b, self.atol, "final state with the state carried across halves")

    def test_step_matches_forward(self):
        cell = self._cell()
        x = self._x()
        y, state = cell(x, None)
        s = cell.init_state(self.batch, dtype=self.dtype)
        ys = []
        for t in range(x.size(1)):
            yt, s = cell.step(x[:, t], s)
            assert yt.shape == (self.batch, cell.output_size), "step must return y (B, output_size)"
            ys.append(yt)
        _assert_close(torch.stack(ys, 1), y, self.atol, "step-by-step vs forward")
        for a, b in zip(s, state):
            _assert_close(a, b, self.atol, "final state, step-by-step vs forward")

    def test_step_under_inference_mode_matches_forward(self):
        """Generation consumes the prompt with ``forward`` and continues with ``step``, both under
        ``torch.inference_mode()`` (or ``torch.no_grad()``): the outputs must be those of ``forward``
        over the whole sequence with autograd on (as in training)."""
        cell = self._cell()
        x = self._x(seq_len=2 * self.seq_len)
        y_ref, s_ref = cell(x, None)  # autograd on, as in training
        y_ref, s_ref = y_ref.detach(), tuple(t.detach() for t in s_ref)
        for mode in (torch.inference_mode, torch.no_grad):
            with mode():
                y1, s = cell(x[:, : self.seq_len], None)  # the prompt
                ys = [y1]
                for t in range(self.seq_len, x.size(1)):  # then one token at a time
                    yt, s = cell.step(x[:, t], s)
                    ys.append(yt.unsqueeze(1))
                y = torch.cat(ys, 1)
            _assert_close(y.clone(), y_ref, self.atol, f"forward + step under torch.{mode.__name__}() vs forward")
            for a, b in zip(s, s_ref):
                _assert_close(a.clone(), b, self.atol, f"final state under torch.{mode.__name__}() vs forward")
            with mode():  # from the zero state, every token through step (an empty prompt)
                s = cell.init_state(self.batch, dtype=self.dtype)
                ys = []
                for t in range(x.size(1)):
                    yt, s = cell.step(x[:, t], s)
                    ys.append(yt)
                y = torch.stack(ys, 1)
            _assert_close(y.clone(), y_ref, self.atol, f"step from init_state under torch.{mode.__name__}() vs forward")

    def test_dropout_is_active_in_training_and_off_in_eval(self):
        """``dropout`` (between stacked layers) must change the training outputs, differently on each
        call, and must not act in eval mode."""
        layers = max(2, self.num_layers)
        x = self._x()
        plain = self._cell(num_layers=layers, dropout=0.0)
        cell = self._cell(num_layers=layers, dropout=0.5)
        y_eval, _ = cell(x, None)
        y_plain, _ = plain(x, None)
        _assert_close(y_eval, y_plain, self.atol, "eval mode with dropout=0.5 vs the same weights with dropout=0.0")
        cell.train()
        torch.manual_seed(1)
        y1, _ = cell(x, None)
        torch.manual_seed(2)
        y2, _ = cell(x, None)
        cell.eval()
        assert (y1 - y_eval).abs().max().item() > 1e-6, (
            f"{type(cell).__name__}(dropout=0.5, num_layers={layers}) gives the same outputs in training as in "
            f"eval mode: dropout is never applied. Apply it between layers when self.training "
            f"(e.g. torch.nn.functional.dropout(y, self.dropout, self.training)).")
        assert (y1 - y2).abs().max().item() > 1e-6, "two training forwards with dropout=0.5 gave the same outputs"

    def test_gradients_flow_to_input_state_and_parameters(self):
        cell = self._cell().train()
        x = self._x().requires_grad_(True)
        s0 = tuple(t.clone().normal_().requires_grad_(True) for t in cell.init_state(self.batch, dtype=self.dtype))
        y, s = cell(x, s0)
        (y.pow(2).sum() + sum(t.pow(2).sum() for t in s)).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, "no gradient reaches the input"
        assert x.grad[:, 0].abs().sum() > 0, "no gradient reaches the first time step"
        assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in s0), "no gradient reaches the initial state"
        params = [(n, p) for n, p in cell.named_parameters() if p.requires_grad]
        assert params, "the cell has no trainable parameters"
        missing = [n for n, p in params if p.grad is None or not bool(torch.isfinite(p.grad).all())]
        assert not missing, f"parameters without a finite gradient: {missing}"
        assert sum(float(p.grad.abs().sum()) for _, p in params) > 0

    def test_reorder_state_selects_batch_rows(self):
        cell = self._cell()
        x = self._x(seq_len=2 * self.seq_len)
        x1, x2 = x[:, : self.seq_len], x[:, self.seq_len:]
        _, s1 = cell(x1, None)
        y2, _ = cell(x2, s1)
        index = torch.tensor([2, 0, 0, 1])[: max(2, self.batch + 1)] % self.batch  # reorder and duplicate rows
        moved = cell.reorder_state(s1, index)
        for a, b, d in zip(moved, s1, cell._batch_dims(s1)):
            assert a.size(d) == index.numel()
        y2r, _ = cell(x2[index], moved)
        _assert_close(y2r, y2[index], self.atol, "continuing from a reordered state")

    def test_detach_state_cuts_the_graph(self):
        cell = self._cell().train()
        _, s = cell(self._x().requires_grad_(True), None)
        assert all(not t.requires_grad for t in cell.detach_state(s))

    def test_eval_mode_is_deterministic_with_dropout(self):
        cell = self._cell(num_layers=max(2, self.num_layers), dropout=0.5)
        x = self._x()
        y1, _ = cell(x, None)
        y2, _ = cell(x, None)
        _assert_close(y1, y2, 0.0, "two eval-mode forwards with dropout=0.5")
        s = cell.init_state(self.batch, dtype=self.dtype)
        ys = []
        for t in range(x.size(1)):
            yt, s = cell.step(x[:, t], s)
            ys.append(yt)
        _assert_close(torch.stack(ys, 1), y1, self.atol, "eval-mode step-by-step vs forward with dropout=0.5")

    def test_single_layer_and_batch_of_one(self):
        cell = self._cell(num_layers=1)
        y, state = cell(self._x(batch=1, seq_len=1), None)
        assert y.shape == (1, 1, cell.output_size)


# ------------------------------------------------------------------------------------------
class DecoderContract:
    """The decoding-strategy contract of ``lstm_pipeline.generation.strategies.DecodingStrategy``."""

    vocab_size = 13
    max_new_tokens = 9
    # a decoder opts out of two checks with class attributes (see DecodingStrategy):
    # ``scores_are_logprob_sums = False`` (e.g. length-normalised beam scores), ``streams = False``

    def make_decoder(self):
        """Return the decoding strategy under test."""
        raise NotImplementedError("implement make_decoder()")

    #: how peaked the test model's next-token distributions are (the output head's weights are
    #: scaled by this): a near-uniform model would hide scores taken after top-k/top-p/top-a filtering
    peak = 4.0

    def make_model(self):
        """A tiny real model with peaked next-token distributions; override to test against another."""
        from .models.lm import RecurrentLM

        torch.manual_seed(0)
        model = RecurrentLM(self.vocab_size, {"name": "lstm"}, embedding_dim=8, hidden_size=16, num_layers=1).eval()
        with torch.no_grad():
            model.head.weight.mul_(self.peak)
            model.head.bias.copy_(torch.randn(self.vocab_size, generator=torch.Generator().manual_seed(3)) * self.peak)
        return model

    def _generate(self, model, prompts, seed: int = 0, **kw):
        return self.make_decoder().generate(model, prompts, max_new_tokens=kw.pop("max_new_tokens", self.max_new_tokens),
                                            generator=torch.Generator().manual_seed(seed), **kw)

    def test_is_a_decoding_strategy_with_api(self):
        from .generation.strategies import DecodingStrategy

        dec = self.make_decoder()
        assert isinstance(dec, DecodingStrategy), f"{type(dec).__name__} must subclass DecodingStrategy"
        _assert_api(type(dec), type(dec).__name__)

    def test_lengths_and_id_range(self):
        res = self._generate(self.make_model(), [[1, 2, 3], [4, 5, 6]])
        assert len(res.sequences) == 2 and len(res.scores) == 2
        for row in res.sequences:
            assert len(row) == self.max_new_tokens
            assert all(isinstance(t, int) and 0 <= t < self.vocab_size for t in row)
        assert all(s == s and s <= 1e-6 for s in res.scores), f"scores must be log-probabilities: {res.scores}"

    def test_seeded_runs_are_identical(self):
        model = self.make_model()
        a = self._generate(model, [[1, 2], [3, 4]], seed=7)
        b = self._generate(model, [[1, 2], [3, 4]], seed=7)
        assert a.sequences == b.sequences

    def test_ragged_and_empty_prompts(self):
        res = self._generate(self.make_model(), [[1], [2, 3, 4, 5], []], bos_token_id=0)
        assert [len(r) for r in res.sequences] == [self.max_new_tokens] * 3

    def test_stops_at_end_of_text(self):
        model = self.make_model()
        eos = self.vocab_size - 1
        with torch.no_grad():
            model.head.bias[eos] = 60.0  # end of text becomes (almost) certain
        res = self._generate(model, [[1, 2], [3]], eos_token_id=eos)
        assert res.sequences == [[eos], [eos]], res.sequences

    def test_scores_are_model_log_probabilities(self):
        if not getattr(self.make_decoder(), "scores_are_logprob_sums", True):
            pytest.skip("this decoder documents other scores")
        model = self.make_model()
        prompts = [[1, 2, 3], [4, 5, 6]]
        res = self._generate(model, prompts)
        for p, row, score in zip(prompts, res.sequences, res.scores):
            tokens = torch.tensor([p + row])
            with torch.no_grad():
                logits, _ = model(tokens[:, :-1])
            logp = torch.log_softmax(logits.double(), -1)[0, len(p) - 1:]
            want = logp.gather(1, torch.tensor(row)[:, None]).sum().item()
            assert abs(want - score) < 1e-3 * max(1.0, abs(want)), (
                f"score {score} vs the model's own log-probability {want} of the generated ids: a score is the "
                f"sum of log_softmax(model logits) at the chosen ids, before any filtering, temperature or "
                f"penalty (or set scores_are_logprob_sums = False and document what it is)")

    def test_streamer_receives_row_zero(self):
        if not getattr(self.make_decoder(), "streams", True):
            pytest.skip("this decoder does not stream")

        class Collect:
            def __init__(self):
                self.ids, self.ended = [], 0

            def put(self, token_id):
                self.ids.append(int(token_id))

            def end(self):
                self.ended += 1

        st = Collect()
        res = self._generate(self.make_model(), [[1, 2, 3], [4, 5, 6]], streamer=st)
        assert st.ids == res.sequences[0] and st.ended == 1


# ------------------------------------------------------------------------------------------
class DataSourceContract:
    """The data-source contract: ``load() -> DatasetDict(train, validation, test)`` of strings."""

    splits: Sequence[str] = ("train", "validation", "test")

    def make_source(self, tmp_path):
        """Return the data source under test; ``tmp_path`` is a fresh directory for its files."""
        raise NotImplementedError("implement make_source(tmp_path)")

    def test_has_api_and_text_column(self, tmp_path):
        src = self.make_source(tmp_path)
        _assert_api(type(src), type(src).__name__)
        assert isinstance(getattr(src, "text_column", None), str), "a data source names its text_column"

    def test_load_returns_the_three_splits_of_text(self, tmp_path):
        import datasets

        src = self.make_source(tmp_path)
        dd = src.load()
        assert isinstance(dd, datasets.DatasetDict), "load() must return a datasets.DatasetDict"
        assert set(self.splits) <= set(dd), f"load() must return the splits {list(self.splits)}; got {list(dd)}"
        for split in self.splits:
            assert src.text_column in dd[split].column_names, f"split '{split}' lacks column '{src.text_column}'"
            assert all(isinstance(t, str) for t in list(dd[split][src.text_column])[:50])
        assert len(dd["train"]) > 0 and sum(len(t) for t in list(dd["train"][src.text_column])) > 0, "train has no text"

    def test_loading_is_deterministic(self, tmp_path):
        a = self.make_source(tmp_path).load()
        b = self.make_source(tmp_path).load()
        col = self.make_source(tmp_path).text_column
        for split in self.splits:
            assert list(a[split][col]) == list(b[split][col])


# ------------------------------------------------------------------------------------------
class TokenizerContract:
    """The tokenizer contract: ``train(texts) -> tokenizers.Tokenizer`` and a ``lossless`` flag."""

    texts: Sequence[str] = (
        "First Citizen:\nBefore we proceed any further, hear me speak.\n",
        "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n",
        "MENENIUS:\nI tell you, friends, most charitable care\nHave the patricians of you.\n",
    ) * 4

    def make_tokenizer(self):
        """Return the tokenizer factory under test (the registered class, built from its config)."""
        raise NotImplementedError("implement make_tokenizer()")

    def _trained(self):
        from .tokenization.base import TextTokenizer

        return TextTokenizer(self.make_tokenizer().train(iter(self.texts)))

    def test_has_api_and_lossless_flag(self):
        tok = self.make_tokenizer()
        _assert_api(type(tok), type(tok).__name__)
        assert isinstance(getattr(tok, "lossless", None), bool), "a tokenizer says whether it is lossless (bool)"

    def test_train_returns_a_tokenizers_tokenizer(self):
        from tokenizers import Tokenizer

        tk = self.make_tokenizer().train(iter(self.texts))
        assert isinstance(tk, Tokenizer)
        assert tk.get_vocab_size() > 0

    def test_ids_are_in_range(self):
        tk = self._trained()
        ids = tk.encode("".join(self.texts))
        assert ids and all(0 <= i < tk.vocab_size for i in ids)

    def test_save_and_load_give_the_same_ids(self, tmp_path):
        from .tokenization.base import TextTokenizer

        tk = self._trained()
        tk.save(tmp_path / "tokenizer.json")
        json.loads((tmp_path / "tokenizer.json").read_text())  # plain JSON
        back = TextTokenizer.load(tmp_path)
        for t in self.texts[:3]:
            assert back.encode(t) == tk.encode(t)

    def test_training_is_deterministic(self):
        if not getattr(self.make_tokenizer(), "deterministic", True):
            pytest.skip("tokenizer declares deterministic = False (its trainer is not reproducible)")
        a, b = self._trained(), self._trained()
        assert a.tk.get_vocab() == b.tk.get_vocab()
        assert a.encode(self.texts[1]) == b.encode(self.texts[1])

    def test_lossless_round_trip(self):
        if not self.make_tokenizer().lossless:
            pytest.skip("tokenizer declares lossless = False")
        tk = self._trained()
        for t in self.texts[:3]:
            assert tk.decode(tk.encode(t)) == t


# ------------------------------------------------------------------------------------------
class ThrowawayEnv:
    """A virtual environment layered over the running one, to ``pip install`` / ``pip uninstall``
    plugin packages for real without touching the running environment.

    The new environment sees every package of the current interpreter's site directories
    (torch, lstm-pipeline itself, editable installs included) through a ``.pth`` hook, and installs
    into its own ``site-packages``, so entry points of what is installed there are visible only
    to its ``python``. Packages are built without build isolation (no network needed)."""

    def __init__(self, root):
        import site
        import subprocess
        import sys
        import sysconfig
        from pathlib import Path

        self.root = Path(root)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.root)], check=True)
        self.python = str(self.root / "bin" / "python")
        purelib = subprocess.run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        parents = [p for p in [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"]]
                   if Path(p).is_dir()]
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(parents))
        (Path(purelib) / "_lstm_pipeline_parent_env.pth").write_text(lines)

    def run(self, *args: str, check: bool = True, timeout: int = 600, cwd=None, env=None):
        """Run ``python <args>`` in the environment; raise with its output when it fails."""
        import os
        import subprocess

        proc = subprocess.run([self.python, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env={**os.environ, **(env or {}), "PYTHONNOUSERSITE": "1"})
        if check and proc.returncode != 0:
            raise AssertionError(f"python {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc

    def pip_install(self, *paths) -> None:
        self.run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                 *map(str, paths))

    def pip_uninstall(self, *dists: str) -> None:
        self.run("-m", "pip", "uninstall", "-y", "-q", *dists)
