"""RecurrentLM: embedding -> stacked recurrent cell (from the cells registry) -> dropout -> head.

The model is built from a plain config dict (JSON-able), never from pickled modules, so the
exported ``config.json`` + ``model.safetensors`` fully describe it.

Regularisation switches (all off by default, all inactive in ``eval()`` mode), after AWD-LSTM:
``dropout_embedding`` (drop whole embedding rows), ``dropout_input`` / ``dropout_hidden`` /
``dropout_output`` (locked dropout on the cell's input, between layers, on the last layer's output),
``weight_drop`` (DropConnect on the hidden-to-hidden weights, applied functionally so the fused
kernel still runs), ``ar_alpha`` / ``tar_beta`` (activation / temporal activation regularisation,
returned by :meth:`RecurrentLM.features_train` to be added to the loss).

Output layer (``output``): ``full`` (a linear head and a softmax over the vocabulary) or ``adaptive``
(the adaptive softmax of Grave et al. 2017, ``torch.nn.AdaptiveLogSoftmaxWithLoss``: a head over the
``adaptive_cutoffs[0]`` most frequent tokens plus one entry per tail cluster, each cluster a
low-rank product). With ``adaptive`` every "logits" the model hands out (``forward``, ``prefill``,
``step``) are the full log-probabilities, so that every consumer's log-softmax leaves them as they
are; training (``head_loss``) never forms them. The clusters follow the frequency order of the
training data: the buffer ``adaptive_rank`` (V,) gives each token id its frequency rank (set by
training from the train split's counts, :meth:`RecurrentLM.set_frequency_order`; saved in
``model.safetensors``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..cells.base import RecurrentCell, State, step_linear
from .init import INIT_SCHEMES, init_weights
from ..kernels.linear import linear, linear_cross_entropy
from ..registry import CELLS
from .dropout import Dropout, LockedDropout, drop_hidden_weights, embedding_dropout, hidden_weight_names


class OneHot(nn.Module):
    """Keras-style one-hot input encoding (the seed model feeds one-hot characters)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, tokens: Tensor) -> Tensor:
        return F.one_hot(tokens, self.vocab_size).float()


_CELL_RUNTIME = ("input_size", "hidden_size", "num_layers", "dropout")


def complete_cell_config(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's config with every setting its class takes, defaults filled in from its signature."""
    import inspect

    cell = dict(cell)
    try:
        params = inspect.signature(CELLS.get(cell["name"])).parameters
    except (KeyError, TypeError, ValueError, LookupError):
        return cell
    return {"name": cell["name"], **{k: p.default for k, p in params.items() if k not in _CELL_RUNTIME
                                     and p.default is not inspect.Parameter.empty
                                     and p.kind is p.POSITIONAL_OR_KEYWORD}, **cell}


def default_cutoffs(vocab_size: int) -> list[int]:
    """The adaptive softmax's cutoffs scaled to the vocabulary: the head keeps the 6% most frequent
    tokens, a first cluster the next 24%, a second the rest (WikiText-2's 33,278 words: [1997, 9983];
    WikiText-103's 267,735: [16064, 80320], near the usual [20000, 60000]); fewer for tiny vocabularies."""
    cuts = sorted({max(1, round(vocab_size * f)) for f in (0.06, 0.3)})
    return [c for c in cuts if c < vocab_size] or ([1] if vocab_size > 1 else [])


def _check_adaptive(vocab_size: int, in_features: int, cutoffs: list, div_value: float) -> None:
    """Raise one line naming the setting when the adaptive softmax's settings cannot work."""
    if (not cutoffs or any(not isinstance(c, int) or isinstance(c, bool) for c in cutoffs)
            or list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] >= vocab_size):
        raise ValueError(f"model.adaptive_cutoffs must be increasing whole numbers from 1 to vocab_size - 1 = "
                         f"{vocab_size - 1} (frequency ranks where a cluster starts), not {cutoffs}; "
                         f"e.g. model.adaptive_cutoffs=[{','.join(map(str, default_cutoffs(vocab_size)))}]")
    if isinstance(div_value, bool) or not isinstance(div_value, (int, float)) or not div_value > 0:
        raise ValueError(f"model.adaptive_div_value must be a number > 0 (cluster i's projection is "
                         f"hidden / div_value^(i+1) wide; 4 is usual), not {div_value!r}")


def adaptive_softmax(in_features: int, vocab_size: int, cutoffs: list[int], div_value: float,
                     head_bias: bool) -> nn.AdaptiveLogSoftmaxWithLoss:
    """``nn.AdaptiveLogSoftmaxWithLoss`` whose cluster projections are at least 1 wide (PyTorch's
    would be 0 wide where ``in_features / div_value^(i+1)`` < 1: a small model, many clusters)."""
    import warnings

    with warnings.catch_warnings():  # a 0-wide projection warns before it is replaced below
        warnings.simplefilter("ignore")
        a = nn.AdaptiveLogSoftmaxWithLoss(in_features, vocab_size, cutoffs, div_value=div_value, head_bias=head_bias)
    for i, (down, up) in enumerate(a.tail):
        if down.out_features < 1:
            a.tail[i] = nn.Sequential(nn.Linear(in_features, 1, bias=False), nn.Linear(1, up.out_features, bias=False))
    return a


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"model.{name} must be a probability in [0, 1), not {p}")


def _check_settings(s: Mapping[str, Any]) -> None:
    """The settings :class:`RecurrentLM` can check before building anything: probabilities in
    [0, 1), a known init scheme, ``last_layer_size`` and its need for one cell per layer,
    non-negative regularisation weights. Raises ValueError naming the setting."""
    for name in ("dropout", "dropout_embedding", "dropout_input", "dropout_hidden", "dropout_output", "weight_drop"):
        _check_p(name, s[name])
    if s["init"] not in INIT_SCHEMES:
        raise ValueError(f"model.init must be one of {', '.join(INIT_SCHEMES)}, not {s['init']!r}")
    last_layer_size = s["last_layer_size"]
    if last_layer_size < 0:
        raise ValueError(f"model.last_layer_size must be >= 0 (0: hidden_size), not {last_layer_size}")
    if last_layer_size and s["num_layers"] > 1 and not s["dropout_hidden"] > 0:
        raise ValueError("model.last_layer_size needs one cell per layer, which model.dropout_hidden > 0 gives "
                         "(the fused multi-layer cell has one width); set model.dropout_hidden or model.last_layer_size=0")
    if s["ar_alpha"] < 0 or s["tar_beta"] < 0:
        raise ValueError(f"model.ar_alpha and model.tar_beta must be >= 0, not {s['ar_alpha']}, {s['tar_beta']}")


class RecurrentLM(nn.Module):
    """Embedding (or one-hot) -> stacked recurrent cells -> (tying projection) -> linear head.

    Its signature holds the one set of defaults: ``conf/model/lstm_lm.yaml`` adds nothing to it, so
    ``RecurrentLM(vocab_size)`` is the model ``lstm-pipeline train`` trains by default (a 2 x 256
    LSTM over 64-wide embeddings, dropout 0.1: the character-level char-rnn shape). :attr:`config` is
    every setting, defaults included (what ``config.json`` records, so that a later change of a
    default never changes a saved model)."""

    def __init__(
        self,
        vocab_size: int,
        cell: Mapping[str, Any] | None = None,  # the cell's config: {"name": <registered cell>, **its settings}; lstm
        embedding_dim: int = 64,       # width of token embeddings (may differ from hidden_size); 64 is plenty for characters
        hidden_size: int = 256,        # recurrent width
        num_layers: int = 2,           # stacked layers
        dropout: float = 0.1,          # plain dropout between layers (inside the cell) and on the output
        tie_weights: bool = False,     # share the embedding matrix with the output head
        input_encoding: str = "embedding",  # "embedding" or "one_hot" (Keras seed model)
        dropout_embedding: float = 0.0,  # drop whole rows of the embedding matrix (AWD "dropoute")
        dropout_input: float = 0.0,    # locked dropout on the embeddings fed to the cell ("dropouti")
        dropout_hidden: float = 0.0,   # locked dropout between layers ("dropouth"; one cell per layer)
        dropout_output: float = 0.0,   # locked dropout on the last layer's output ("dropout")
        weight_drop: float = 0.0,      # DropConnect on hidden-to-hidden weights ("wdrop")
        ar_alpha: float = 0.0,         # activation regularisation: alpha * mean(dropped_out^2)
        tar_beta: float = 0.0,         # temporal AR: beta * mean((h_t - h_{t-1})^2)
        locked_dropout: bool = True,   # dropout_input/_hidden/_output: one mask per sequence, or plain
        output: str = "full",          # output layer: "full" softmax or "adaptive" softmax (large vocabularies)
        adaptive_cutoffs: list[int] | None = None,  # output=adaptive: frequency ranks where clusters start; None: 6% and 30% of the vocabulary
        adaptive_div_value: float = 4.0,  # output=adaptive: cluster i's projection is hidden / div_value^(i+1) wide
        adaptive_head_bias: bool = False,  # output=adaptive: a bias in the head (shortlist + one entry per cluster)
        init: str = "torch",           # weight initialisation scheme (models/init.py): torch, word_language_model, awd_lstm, char_rnn, keras
        last_layer_size: int = 0,      # width of the last layer (0: hidden_size); AWD-LSTM ties by making it embedding_dim
    ):
        super().__init__()
        cell = dict(cell or {"name": "lstm"})
        settings = dict(locals())
        self.config: dict[str, Any] = {k: settings[k] for k in _SETTINGS}
        self.config["cell"] = complete_cell_config(cell)
        _check_settings(settings)
        self.vocab_size = vocab_size
        self.dropout_embedding, self.weight_drop = dropout_embedding, weight_drop
        self.ar_alpha, self.tar_beta = ar_alpha, tar_beta
        in_size = self._build_input(settings)
        out_size = self._build_layers(cell, in_size, settings)
        self._build_output(out_size, settings)
        init_weights(self, init)
        self._register_load_state_dict_pre_hook(self._upgrade_keys)

    def _build_input(self, s: dict) -> int:
        """``self.embedding``: an embedding table or a one-hot encoding, per ``input_encoding``;
        returns the width it feeds the first cell. Raises ValueError for an unknown encoding or
        ``dropout_embedding`` without an embedding."""
        if s["input_encoding"] == "one_hot":
            if s["dropout_embedding"]:
                raise ValueError("model.dropout_embedding needs input_encoding=embedding (one-hot inputs have "
                                 "no embedding matrix); set model.dropout_embedding=0")
            self.embedding: nn.Module = OneHot(s["vocab_size"])
            return s["vocab_size"]
        if s["input_encoding"] == "embedding":
            self.embedding = nn.Embedding(s["vocab_size"], s["embedding_dim"])
            return s["embedding_dim"]
        raise ValueError(f"model.input_encoding must be 'embedding' or 'one_hot', not {s['input_encoding']!r}")

    def _build_layers(self, cell: dict, in_size: int, s: dict) -> int:
        """``self.layers`` (the recurrent cells) and the dropouts around them; returns the last
        layer's output width. Raises ValueError when ``weight_drop`` is set on a cell without
        hidden-to-hidden weights."""
        # One stacking representation: ``layers``, a list of cells run one after the other. The fused
        # kernels stack their layers inside one cell (``num_layers=L``, plain dropout between them); locked
        # dropout between layers (``dropout_hidden``) needs each layer's output, so then every layer is its
        # own one-layer cell. Consumers never look inside: they call forward / step / prefill.
        num_layers, dropout, last_layer_size = s["num_layers"], s["dropout"], s["last_layer_size"]
        per_layer = s["dropout_hidden"] > 0 and num_layers > 1
        cells, size = [], in_size
        n_cells = num_layers if per_layer else 1
        for i in range(n_cells):
            width = last_layer_size if last_layer_size and i == n_cells - 1 else s["hidden_size"]
            cells.append(CELLS.build(cell, input_size=size, hidden_size=width,
                                     num_layers=1 if per_layer else num_layers, dropout=0.0 if per_layer else dropout))
            size = cells[-1].output_size
        self.layers = nn.ModuleList(cells)
        self._state_lens = [len(c.init_state(1)) for c in cells]
        self.lock_in = LockedDropout(s["dropout_input"], s["locked_dropout"])
        self.lock_hidden = LockedDropout(s["dropout_hidden"], s["locked_dropout"])
        self.lock_out = LockedDropout(s["dropout_output"], s["locked_dropout"])
        self.drop = Dropout(dropout)
        self._whh = [hidden_weight_names(c) for c in self._cells()]
        if s["weight_drop"] and not all(self._whh):
            raise ValueError(f"model.weight_drop needs a cell with hidden-to-hidden weights named 'weight_hh*'; "
                             f"cell {dict(cell).get('name')!r} has none: set model.weight_drop=0")
        return size

    def _build_output(self, out_size: int, s: dict) -> None:
        """The output layer: ``self.proj`` (tying through a projection when the cell's width is not
        the embedding's), then ``self.head`` (a full softmax, tied or not) or ``self.adaptive`` (an
        adaptive softmax). Raises ValueError for an unknown ``output`` or a tie that cannot be."""
        output, tie_weights, vocab_size = s["output"], s["tie_weights"], s["vocab_size"]
        head_in = out_size
        self.proj: nn.Module | None = None
        if output not in ("full", "adaptive"):
            raise ValueError(f"model.output must be 'full' or 'adaptive', not {output!r}")
        if output == "adaptive" and tie_weights:
            raise ValueError("model.tie_weights=true does not combine with model.output=adaptive (the adaptive "
                             "softmax has no one (vocab, dim) matrix to share): set model.tie_weights=false or "
                             "model.output=full")
        if tie_weights:
            if s["input_encoding"] != "embedding":
                raise ValueError("model.tie_weights=true needs input_encoding=embedding")
            if out_size != s["embedding_dim"]:
                # tie through a projection from the cell's output to the embedding width
                self.proj = nn.Linear(out_size, s["embedding_dim"], bias=False)
                head_in = s["embedding_dim"]
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if output == "adaptive":
            cutoffs = default_cutoffs(vocab_size) if s["adaptive_cutoffs"] is None else list(s["adaptive_cutoffs"])
            _check_adaptive(vocab_size, head_in, cutoffs, s["adaptive_div_value"])
            self.config["adaptive_cutoffs"] = cutoffs  # what config.json records: the rule may change, a model not
            self.head = None
            self.adaptive = adaptive_softmax(head_in, vocab_size, cutoffs, s["adaptive_div_value"],
                                             s["adaptive_head_bias"])
            # adaptive_rank[token id] = its frequency rank: the index the clusters are cut on
            self.register_buffer("adaptive_rank", torch.arange(vocab_size))
        else:
            self.head = nn.Linear(head_in, vocab_size)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def _cells(self) -> list[RecurrentCell]:
        return list(self.layers)

    @staticmethod
    def _upgrade_keys(state_dict, prefix, *args) -> None:
        """Load-state-dict pre-hook: files written before ``layers`` (one fused cell under ``cell.``)
        load unchanged: ``cell.X`` is ``layers.0.X``; files saved by the transformers adapter (whose
        base model is ``lm``) load too: ``lm.X`` is ``X``."""
        for key in [k for k in state_dict if k.startswith(prefix + "lm.")]:
            state_dict[prefix + key[len(prefix) + 3:]] = state_dict.pop(key)
        for key in [k for k in state_dict if k.startswith(prefix + "cell.")]:
            state_dict[prefix + "layers.0." + key[len(prefix) + 5:]] = state_dict.pop(key)

    # -- state ------------------------------------------------------------------------------
    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """The zero state of every layer, concatenated: a tuple of tensors (see ``state_batch_dims``)."""
        return tuple(s for c in self.layers for s in c.init_state(batch, device=device, dtype=dtype))

    def _split(self, state: State | None) -> list[State | None]:
        if state is None:
            return [None] * len(self.layers)
        out, i = [], 0
        for n in self._state_lens:
            out.append(tuple(state[i:i + n]))
            i += n
        return out

    def _layer_states(self, state: State) -> list[tuple[RecurrentCell, State]]:
        """(cell, its part of the state) for each cell, bottom first."""
        return list(zip(self.layers, self._split(state)))

    def reorder_state(self, state: State, index: Tensor) -> State:
        return tuple(s for c, st in self._layer_states(state) for s in c.reorder_state(st, index))

    def state_batch_dims(self, state: State) -> list[int]:
        """The batch dimension of each state tensor, whatever the cells and layering."""
        return [d for c, st in self._layer_states(state) for d in c._batch_dims(st)]

    def top_hidden(self, state: State) -> Tensor:
        """(B, D): the top layer's hidden state (the first tensor of the top cell's state)."""
        cell, st = self._layer_states(state)[-1]
        s = st[0].movedim(cell._batch_dims(st)[0], 0)  # (B, L, H) or (B, H)
        return s[:, -1] if s.dim() == 3 else s.flatten(1)

    # -- forward ----------------------------------------------------------------------------
    def _run_cell(self, i: int, cell: RecurrentCell, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        if self.training and self.weight_drop > 0:
            weights = drop_hidden_weights(cell, self._whh[i], self.weight_drop)
            return functional_call(cell, weights, (x, state), strict=False)
        return cell(x, state)

    def _features(self, tokens: Tensor, state: State | None) -> tuple[Tensor, Tensor, State]:
        """tokens (B, T) -> raw last-layer output (B, T, H), regularised output (B, T, H), state."""
        if isinstance(self.embedding, nn.Embedding):
            x = embedding_dropout(self.embedding, tokens, self.dropout_embedding, self.training)  # (B, T, E)
        else:
            x = self.embedding(tokens)  # (B, T, V)
        x = self.lock_in(x)
        states = []
        for i, (cell, st) in enumerate(zip(self.layers, self._split(state))):
            if i > 0:
                x = self.lock_hidden(x)
            x, st = self._run_cell(i, cell, x, st)  # (B, T, H)
            states.append(st)
        raw, state = x, tuple(s for st in states for s in st)
        return raw, self.drop(self.lock_out(raw)), state

    def _head_input(self, y: Tensor) -> Tensor:
        """The cell's output as the output layer takes it (through the tying projection, if any)."""
        return self.proj(y) if self.proj is not None else y

    def _logits(self, y: Tensor) -> Tensor:
        # the head's products run on oneDNN on the CPU (models/linear.py): most of a word-level step
        if self.adaptive is not None:
            return self._adaptive_log_prob(self._head_input(y), lambda m, x: linear(x, m.weight, m.bias))
        return linear(self._head_input(y), self.head.weight, self.head.bias)

    # -- the adaptive softmax ----------------------------------------------------------------
    def set_frequency_order(self, counts) -> None:
        """output=adaptive: order the clusters by these token counts (V,) (the train split's; ties by
        id): the most frequent ``adaptive_cutoffs[0]`` tokens form the head's shortlist, and so on.
        Set before training (the order is part of the model; it is saved with the weights)."""
        if self.adaptive is None:
            raise ValueError("set_frequency_order needs model.output=adaptive")
        counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
        if counts.numel() != self.vocab_size:
            raise ValueError(f"token counts for {counts.numel()} ids, but the vocabulary has {self.vocab_size}")
        order = torch.sort(counts.cpu(), descending=True, stable=True).indices  # rank -> id; ties by id
        rank = torch.empty_like(self.adaptive_rank)
        rank[order.to(rank.device)] = torch.arange(self.vocab_size, device=rank.device)
        self.adaptive_rank.copy_(rank)

    def _adaptive_log_prob(self, x: Tensor, product) -> Tensor:
        """x (..., H') -> the full log-probabilities (..., V), by token id: the head's log-softmax for
        the shortlist, a cluster's log-softmax plus its head entry for the rest (as
        ``AdaptiveLogSoftmaxWithLoss.log_prob``). ``product(module, x)`` is the Linear's product
        (oneDNN ``linear`` in forward, ``step_linear`` in steps: int8 and export see every product)."""
        a = self.adaptive
        lead, x = x.shape[:-1], x.reshape(-1, x.size(-1))
        head = torch.log_softmax(product(a.head, x).float(), -1)  # (N, shortlist + clusters)
        parts = [head[:, :a.shortlist_size]]
        for i, (down, up) in enumerate(a.tail):
            z = product(up, product(down, x))  # (N, cluster size)
            parts.append(torch.log_softmax(z.float(), -1) + head[:, a.shortlist_size + i, None])
        out = torch.cat(parts, -1).index_select(-1, self.adaptive_rank)  # frequency rank -> token id
        return out.view(*lead, self.vocab_size)

    def _adaptive_loss(self, h: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (N, H'), targets (N,) (-100: skipped) -> (mean NLL, how many targets are the full argmax,
        how many targets). The loss never forms the full distribution: the head for every row, a
        cluster's tail only for the rows whose target is in it. The count is exact: where the head's
        argmax is a shortlist token it is the full argmax; the other rows get every cluster's best."""
        a = self.adaptive
        valid = targets != -100
        count = valid.sum()
        rank = self.adaptive_rank[targets.masked_fill(~valid, 0)]  # (N,) frequency ranks
        cuts = torch.tensor(a.cutoffs[:-1], device=h.device)
        cluster = torch.bucketize(rank, cuts, right=True)  # 0: shortlist, i + 1: tail i
        head_target = torch.where(cluster == 0, rank, a.shortlist_size + cluster - 1)
        head_out = linear(h, a.head.weight, a.head.bias)  # (N, shortlist + clusters)
        head_lp = torch.log_softmax(head_out.float(), -1)
        nll = -head_lp.gather(1, head_target[:, None]).squeeze(1)  # (N,)
        for i, (down, up) in enumerate(a.tail):
            rows = ((cluster == i + 1) & valid).nonzero().squeeze(1)
            if rows.numel():
                z = linear(linear(h.index_select(0, rows), down.weight), up.weight)
                nll = nll.index_add(0, rows, F.cross_entropy(z.float(), rank[rows] - a.cutoffs[i], reduction="none"))
        loss = nll.masked_fill(~valid, 0.0).sum() / count
        with torch.no_grad():
            best = head_lp.argmax(-1)  # a shortlist token here is the full argmax
            pred = best.clone()
            far = (best >= a.shortlist_size).nonzero().squeeze(1)
            if far.numel():
                hf = h.detach().index_select(0, far)
                short = head_lp[far, :a.shortlist_size].max(-1)
                top, arg = short.values, short.indices
                for i, (down, up) in enumerate(a.tail):
                    z = torch.log_softmax(linear(linear(hf, down.weight), up.weight).float(), -1).max(-1)
                    v = z.values + head_lp[far, a.shortlist_size + i]
                    better = v > top
                    top, arg = torch.where(better, v, top), torch.where(better, z.indices + a.cutoffs[i], arg)
                pred[far] = arg
            correct = ((pred == rank) & valid).sum()
        return loss, correct, count

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) -> logits (B, T, V) (output=adaptive: the full log-probabilities), state."""
        _, y, state = self._features(tokens, state)
        return self._logits(y), state

    #: prompt tokens consumed per call of the cells in ``prefill``: activations stay O(chunk), not O(prompt)
    PREFILL_CHUNK = 2048

    @torch.no_grad()
    def prefill(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Consume a prompt: tokens (B, T) -> logits after the last token (B, V), state. Only the last
        position goes through the output layer (the head is most of a step's cost), and a long prompt
        runs in chunks of ``PREFILL_CHUNK`` tokens with the state carried, so memory stays flat in its
        length (a 1M-character prompt needs the activations of one chunk, not of the whole text)."""
        for start in range(0, tokens.size(1), self.PREFILL_CHUNK):
            _, y, state = self._features(tokens[:, start:start + self.PREFILL_CHUNK], state)
        return self._logits(y[:, -1]), state

    def features_train(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State, Tensor]:
        """tokens (B, T) -> (the output layer's input (B, T, H'), state, AR/TAR penalty): what
        :meth:`head_loss` takes. The penalty is a scalar, 0 when both are off."""
        raw, y, state = self._features(tokens, state)
        penalty = y.new_zeros(())
        if self.training and self.ar_alpha:
            penalty = penalty + self.ar_alpha * y.float().pow(2).mean()
        if self.training and self.tar_beta and raw.size(1) > 1:
            penalty = penalty + self.tar_beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        return self._head_input(y), state, penalty

    def head_loss(self, features: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """features (..., H') from :meth:`features_train`, targets (...) -> (mean cross-entropy,
        number of targets predicted right, number of targets), skipping targets of -100. The output
        layer and the loss run as one (models/linear.py: ``linear_cross_entropy``; output=adaptive:
        :meth:`_adaptive_loss`, no full softmax)."""
        if self.adaptive is not None:
            return self._adaptive_loss(features.reshape(-1, features.size(-1)), targets.reshape(-1))
        return linear_cross_entropy(features.reshape(-1, features.size(-1)), self.head.weight, self.head.bias,
                                    targets.reshape(-1))

    @torch.no_grad()
    def step(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token per row: tokens (B,) -> logits (B, V) (output=adaptive: the full log-probabilities),
        state. O(1) in the length so far."""
        if state is None:
            state = self.init_state(tokens.size(0), tokens.device)
        x = self.embedding(tokens)  # (B, E)
        states = []
        for cell, st in zip(self.layers, self._split(state)):
            x, st = cell.step(x, st)  # (B, H)
            states.append(st)
        y, state = x, tuple(s for st in states for s in st)
        if self.proj is not None:
            y = step_linear(self.proj, "weight", y, self.proj.weight, self.proj.bias)
        if self.adaptive is not None:  # the full log-probabilities, every product through step_linear
            return self._adaptive_log_prob(y, lambda m, x: step_linear(m, "weight", x, m.weight, m.bias)), state
        return step_linear(self.head, "weight", y, self.head.weight, self.head.bias), state


#: RecurrentLM's settings (its keyword arguments after vocab_size), in signature order
import inspect as _inspect  # noqa: E402

_SETTINGS = [k for k in _inspect.signature(RecurrentLM.__init__).parameters if k not in ("self", "vocab_size")]
