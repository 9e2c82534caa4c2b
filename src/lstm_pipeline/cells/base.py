"""The cell contract every recurrent cell (built-in or plugin) follows.

* ``__init__(input_size, hidden_size, num_layers=1, dropout=0.0, **own_settings)``
* ``output_size``: width of ``y`` (``hidden_size``, or ``proj_size`` where a cell projects).
* ``init_state(batch, device, dtype) -> State``: a tuple of tensors.
* ``forward(x, state) -> (y, state)`` with ``x`` (B, T, input_size) and ``y`` (B, T, output_size).
* ``step(x, state) -> (y, state)`` with ``x`` (B, input_size): one time step, for generation.
* ``state_batch_dims``: for each state tensor, which dimension is the batch, so that decoding can
  ``reorder_state(state, index)`` (beam search) without knowing the cell.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .. import onednn

State = tuple[Tensor, ...]


class _StepCache(dict):
    """The step layouts of one module. Copies and pickles of the module start empty (the layouts
    are rebuilt on the next step): oneDNN's reordered weights have no storage to copy or save."""

    def __deepcopy__(self, memo):
        return _StepCache()

    def __reduce__(self):
        return (_StepCache, ())


def step_weight(owner: nn.Module, name: str, make, *sources: Tensor, tag=None) -> Tensor:
    """``make(*sources)``, cached on ``owner`` while the ``sources`` are unchanged: the weight layouts
    one-token steps read (a concatenation, a summed bias, a blocked copy) are built once per weight
    version, not once per token. The value is rebuilt when a source changes (in-place update,
    load_state_dict, a new tensor). The entry holds its sources, so that no other tensor can take
    their address while it lives (sources may themselves be cached values, rebuilt and freed). With
    gradients enabled nothing is cached. ``tag`` is part of the key (e.g. the batch size a layout is
    tuned for): one entry per ``name``, rebuilt when the tag changes."""
    if torch.is_grad_enabled():
        return make(*sources)
    # cached values made under inference_mode are inference tensors: no version counter, never changed
    key = (tag, *((t.data_ptr(), 0 if t.is_inference() else t._version) for t in sources))
    cache = owner.__dict__.get("_step_weight_cache")
    if cache is None:
        cache = owner.__dict__["_step_weight_cache"] = _StepCache()
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = make(*sources).detach().contiguous()
    cache[name] = (key, value, sources)
    return value


def _column_blocks(weight: Tensor, blocks: int) -> Tensor:
    """(out, in) -> (blocks, in, ceil(out / blocks)): each block a contiguous (in, out) slab."""
    out, inp = weight.shape
    cols = -(-out // blocks)
    padded = torch.nn.functional.pad(weight, (0, 0, 0, blocks * cols - out))
    return padded.t().reshape(inp, blocks, cols).permute(1, 0, 2)


def step_linear(owner: nn.Module, name: str, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for one-token steps (``weight`` (out, in) as PyTorch stores it).

    A step is bound by reading the weights, and on the CPU the plain BLAS call leaves half the
    machine idle (measured on 2 cores, a 10k x 512 head, weights streamed from memory):
    * batch 1: ``addmm`` runs the matrix-vector product on one thread (1.5 ms); the weight is kept as
      one contiguous (in, out) slab per thread (a cached copy) and ``baddbmm`` gives each thread its
      slab (0.9 ms);
    * batch > 1: oneDNN's matmul (``mkldnn._linear_pointwise``, the kernel ``torch.compile`` uses)
      on a weight that oneDNN has reordered for the batch size (cached per power of two): 2-3x
      faster than MKL's ``addmm`` at batch 4-64 (the head at batch 64: 8.8 -> 3.8 ms).
    Elsewhere (GPU, other dtypes, autograd, tracing for export, a build without oneDNN) it is ``F.linear``."""
    if owner.__dict__.get(_INT8) and not torch.is_grad_enabled():
        return _int8_product(owner, name, x, weight, bias)
    cpu_fast = (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
                and not torch.is_grad_enabled() and x.dim() == 2
                and not torch.jit.is_tracing())  # an export must record F.linear: any batch size, ONNX ops
    if not cpu_fast:
        return torch.nn.functional.linear(x, weight, bias)
    out = weight.size(0)
    if x.size(0) == 1:
        blocks = max(1, min(torch.get_num_threads(), out // 256))
        w = step_weight(owner, f"{name}/blocks{blocks}", lambda w: _column_blocks(w, blocks), weight)
        if bias is None:
            y = torch.bmm(x.expand(blocks, 1, -1), w)
        else:
            b = step_weight(owner, f"{name}/bias{blocks}",
                            lambda b: torch.nn.functional.pad(b, (0, w.size(0) * w.size(2) - out)).view(blocks, 1, -1), bias)
            y = torch.baddbmm(b, x.expand(blocks, 1, -1), w)
        return y.view(1, -1)[:, :out]  # (blocks, 1, cols) is (1, blocks * cols) in memory
    if onednn.available():
        bucket = 1 << (x.size(0) - 1).bit_length()  # reordered per power of two: few rebuilds when batches vary
        packed = step_weight(owner, f"{name}/onednn", lambda w: onednn.reorder(w, bucket), weight, tag=bucket)
        return onednn.matmul(x, packed, bias)
    return torch.nn.functional.linear(x, weight, bias)


#: attribute set on a module (by :func:`quantize_int8_`) whose one-token products run in dynamic int8
_INT8 = "_int8_step"


def quantize_int8_(model: nn.Module) -> nn.Module:
    """Make every product that a one-token ``step`` runs through :func:`step_linear` (the cells'
    gate products, a tying projection, the output layer) a dynamic int8 product, in place; returns
    ``model``. Weights are quantised per output row (symmetric, int8) the first time a step uses
    them, activations per call (PyTorch's dynamic quantisation, ``torch.ao.nn.quantized.dynamic``,
    fbgemm/x86 on the CPU). Training and ``forward`` are unchanged (float): this is for generation
    and export of the step on the CPU. The quantised copies are made once: quantise after training.
    Any cell whose ``step`` uses ``step_linear`` is quantised this way; other products stay float."""
    for m in model.modules():
        m.__dict__[_INT8] = True
    return model


def _int8_product(owner: nn.Module, name: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if x.device.type != "cpu":
        raise ValueError("int8 steps run on the CPU only (dynamic quantisation); load the model on device=cpu.")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    key = "int8_" + name.replace("/", "_").replace(".", "_")
    mod = owner._modules.get(key)
    if mod is None:  # first use: quantise this weight (a registered child, so that tracing records it)
        import warnings

        with warnings.catch_warnings():  # torch 2.13 marks torch.ao's quantised tensors deprecated (torchao is next)
            warnings.simplefilter("ignore")
            obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
            w = weight.detach().float().contiguous()
            obs(w)
            scales, zero_points = obs.calculate_qparams()
            qweight = torch.quantize_per_channel(w, scales.double(), zero_points.long(), 0, torch.qint8)
            mod = DynamicLinear(w.size(1), w.size(0), bias_=bias is not None, dtype=torch.qint8)
            mod.set_weight_bias(qweight, None if bias is None else bias.detach().float())
        owner.add_module(key, mod)
    return mod(x.float())


class RecurrentCell(nn.Module):
    #: plugin API this class implements (see lstm_pipeline.registry.API_VERSION)
    lstm_pipeline_api = "1"
    #: batch dimension of each state tensor; layer-major (L, B, H) states use 1
    state_batch_dims: Sequence[int] = (1,)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def run_layers(self, x: Tensor, state: State, layer) -> tuple[Tensor, State]:
        """The layer stack of a layer-major cell: ``layer(k, input, [s[k] for s in state]) -> (output,
        layer state)`` for k = 0 .. num_layers-1, plain dropout (``self.dropout``, training only) between
        layers, the layer states stacked back to (L, ...) tensors. ``x`` is (B, T, in) for a window or
        (B, in) for one step; returns the top layer's output and the new state."""
        new: list[list[Tensor]] = [[] for _ in state]
        inp = x
        for k in range(self.num_layers):
            inp, layer_state = layer(k, inp, [s[k] for s in state])
            for i, s in enumerate(layer_state):
                new[i].append(s)
            if k < self.num_layers - 1 and self.dropout > 0:
                inp = torch.nn.functional.dropout(inp, self.dropout, self.training)
        return inp, tuple(torch.stack(s) for s in new)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: x (B, E) -> y (B, H). The default runs ``forward`` on T=1."""
        y, state = self.forward(x.unsqueeze(1), state)
        return y.squeeze(1), state

    # -- state helpers shared by every cell -------------------------------------------
    def reorder_state(self, state: State, index: Tensor) -> State:
        """Select/reorder batch rows of the state (beam search): index (B',) -> state with B' rows."""
        return tuple(s.index_select(d, index) for s, d in zip(state, self._batch_dims(state)))

    def _batch_dims(self, state: State) -> Sequence[int]:
        dims = tuple(self.state_batch_dims)
        return dims if len(dims) == len(state) else (dims[0],) * len(state)

    @staticmethod
    def detach_state(state: State) -> State:
        return tuple(s.detach() for s in state)
