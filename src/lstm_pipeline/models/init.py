"""Weight initialisation schemes of :class:`~lstm_pipeline.models.lm.RecurrentLM` (``model.init``).

Each preset that reproduces a published recipe starts from that recipe's initialisation; a scheme is
named after the code it comes from:

* ``torch`` (the default): PyTorch's own module defaults, nothing changed. ``nn.Embedding`` is
  N(0, 1), ``nn.Linear`` and the recurrent weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (the recurrent
  weights of ``nn.LSTM`` use 1/sqrt(hidden_size)). With tied weights the output layer therefore starts
  from the N(0, 1) embedding, whose logits are about sqrt(embedding_dim) times too large.
* ``word_language_model``: pytorch/examples' ``RNNModel.init_weights``: embedding (and so a tied
  output layer) and output weights U(-0.1, 0.1), output bias 0, recurrent weights PyTorch's default.
* ``awd_lstm``: salesforce/awd-lstm-lm's ``RNNModel.init_weights``, the same as
  ``word_language_model`` (U(-0.1, 0.1) embedding and output, bias 0); a tying projection (our
  addition, see the presets) keeps PyTorch's default.
* ``char_rnn``: karpathy/char-rnn's ``train.lua``: every parameter U(-0.08, 0.08), then the forget
  gate's input-side bias of each LSTM layer set to 1.
* ``keras``: Keras' layer defaults: ``LSTM`` kernel Glorot-uniform, recurrent kernel orthogonal,
  bias 0 with the forget gate's at 1 (``unit_forget_bias``; one bias, so the hidden-side bias is 0);
  ``Dense`` Glorot-uniform with bias 0; ``Embedding`` U(-0.05, 0.05).

The recurrent parameters are found by name, in the layout of ``nn.LSTM`` that every cell follows:
``weight_ih*`` (G*H, in), ``weight_hh*`` (G*H, H), ``bias_ih*`` / ``bias_hh*`` (G*H,), gates in the
order (i, f, g, o) for the four-gate LSTMs, whose forget gate is thus rows H..2H. Other parameters of
a cell (peepholes, layer norms, projections) keep their defaults.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: the schemes ``model.init`` accepts
INIT_SCHEMES = ("torch", "word_language_model", "awd_lstm", "char_rnn", "keras")


def _recurrent(model: nn.Module) -> list[tuple[str, Tensor, int]]:
    """(kind, parameter, hidden_size) for each recurrent weight/bias of the model's cells; kind is
    ``weight_ih``, ``weight_hh``, ``bias_ih`` or ``bias_hh``."""
    out = []
    for cell in model.layers:
        for name, p in cell.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                if leaf.startswith(kind):
                    out.append((kind, p, cell.hidden_size))
    return out


def _forget_bias(p: Tensor, hidden: int, value: float) -> None:
    """Set the forget gate's part (rows H..2H) of a four-gate LSTM bias (4H,) to ``value``."""
    if p.numel() == 4 * hidden:
        p[hidden:2 * hidden].fill_(value)


def _glorot(w: Tensor) -> None:
    """Keras' glorot_uniform of a (G*H, in) weight: Keras holds it as (in, G*H), so fans are in and G*H."""
    limit = math.sqrt(6.0 / (w.size(0) + w.size(1)))
    w.uniform_(-limit, limit)


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise ``model`` (a :class:`RecurrentLM`) in place after ``scheme`` (one of
    :data:`INIT_SCHEMES`). Raises ``ValueError`` naming ``model.init`` for an unknown scheme."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"model.init must be one of {', '.join(INIT_SCHEMES)}, not {scheme!r}")
    embedding = model.embedding if isinstance(model.embedding, nn.Embedding) else None
    # the output layer's products: the head, or the adaptive softmax's head and cluster projections
    outputs = [model.head] if model.head is not None else [m for m in model.adaptive.modules() if isinstance(m, nn.Linear)]
    if scheme == "torch":
        return
    if scheme in ("word_language_model", "awd_lstm"):
        if embedding is not None:
            embedding.weight.uniform_(-0.1, 0.1)
        for head in outputs:
            if embedding is None or head.weight is not embedding.weight:
                head.weight.uniform_(-0.1, 0.1)
            if head.bias is not None:
                head.bias.zero_()
        return
    if scheme == "char_rnn":
        for p in model.parameters():
            p.uniform_(-0.08, 0.08)
        for kind, p, hidden in _recurrent(model):
            if kind == "bias_ih":
                _forget_bias(p, hidden, 1.0)
        return
    # keras
    if embedding is not None:
        embedding.weight.uniform_(-0.05, 0.05)
    for kind, p, hidden in _recurrent(model):
        if kind == "weight_ih":
            _glorot(p)
        elif kind == "weight_hh":
            # Keras' orthogonal recurrent kernel (H, G*H): orthonormal rows of the transposed matrix
            nn.init.orthogonal_(p)
        else:
            p.zero_()
            if kind == "bias_ih":
                _forget_bias(p, hidden, 1.0)
    if model.proj is not None:
        _glorot(model.proj.weight)
    for head in outputs:
        if embedding is None or head.weight is not embedding.weight:
            _glorot(head.weight)
        if head.bias is not None:
            head.bias.zero_()
