"""``LstmPipelineForCausalLM``: a ``PreTrainedModel`` + ``GenerationMixin`` around ``RecurrentLM``.

The whole ``RecurrentLM`` is one child, ``lm`` (the base model, ``base_model_prefix``): the adapter
never rebuilds any part of it, so every layout (one cell per layer, a tying projection, ``proj_size``,
plugin cells) runs exactly as in lstm-pipeline. ``model.safetensors`` holds RecurrentLM's own keys
(``embedding.weight``, ``layers.0...``); loading prefixes them with ``lm.``. The recurrent state is the generation cache (``RecurrentStateCache``):
the prompt runs once through the fused kernel, each new token costs one ``step``; beam search
reorders the state rows through the cell contract (``reorder_state``). Padded batches (the
``pipeline``'s ``batch_size``; padding on the left, as ``tokenizer_config.json`` says) run one token at
a time where the mask has zeros, the state of a row held still over its padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from ..models.lm import RecurrentLM
from .configuration import LstmPipelineConfig


class RecurrentStateCache:
    """The recurrent state as transformers' generation cache: a tuple of tensors, whatever the cell."""

    is_compileable = False

    def __init__(self, state: tuple[torch.Tensor, ...], lm: RecurrentLM, seen: int):
        self.state, self.lm, self.seen = tuple(state), lm, seen

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.state = self.lm.reorder_state(self.state, beam_idx.to(self.state[0].device))


@dataclass
class RecurrentLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V)
    cache: RecurrentStateCache | None = None


class LstmPipelineForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = LstmPipelineConfig
    config: LstmPipelineConfig
    base_model_prefix = "lm"
    main_input_name = "input_ids"
    _is_stateful = True  # no assisted generation: a recurrent state cannot be rolled back
    _supports_cache_class = False

    def __init__(self, config: LstmPipelineConfig):
        super().__init__(config)
        self.lm = RecurrentLM(config.vocab_size, **config.model)
        if config.model.get("tie_weights", False):
            self._tied_weights_keys = {"lm.head.weight": "lm.embedding.weight"}
        self.post_init()

    def _masked(self, input_ids: torch.LongTensor, mask: torch.Tensor, state):
        """A padded batch (left or right): one token at a time; where ``mask`` is 0 the row's state
        does not change (a pad token never enters it). Returns logits (B, T, V) (those at padded
        positions are the model's output for the pad token, and unused) and the state."""
        lm = self.lm
        if state is None:
            state = lm.init_state(input_ids.size(0), device=input_ids.device)
        out = []
        for t in range(input_ids.size(1)):
            if torch.is_grad_enabled():
                logits, new = lm(input_ids[:, t:t + 1], state)
                logits = logits[:, 0]
            else:
                logits, new = lm.step(input_ids[:, t], state)
            keep = mask[:, t]
            state = tuple(torch.where(keep.view([-1 if i == d else 1 for i in range(n.dim())]), n, o)
                          for n, o, d in zip(new, state, lm.state_batch_dims(state)))
            out.append(logits)
        return torch.stack(out, 1), state

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # our cache is the recurrent state, created by forward

    def _init_weights(self, module):
        pass  # PyTorch's default initialisation, as RecurrentLM uses; from_pretrained loads every weight

    def get_input_embeddings(self):
        return self.lm.embedding

    def get_output_embeddings(self):
        return self.lm.head

    def as_recurrent_lm(self) -> RecurrentLM:
        return self.lm

    def forward(self, input_ids: torch.LongTensor | None = None, cache: RecurrentStateCache | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None, **kwargs) -> RecurrentLMOutput:
        if input_ids is None:
            raise ValueError("LstmPipelineForCausalLM needs input_ids (inputs_embeds are not supported).")
        state = cache.state if cache is not None else None
        # the mask's columns for these input_ids (during generation it also covers earlier tokens)
        mask = attention_mask[:, -input_ids.size(1):].bool() if attention_mask is not None else None
        if mask is not None and not bool(mask.all()):
            logits, state = self._masked(input_ids, mask, state)  # padding: the state holds still there
        elif input_ids.size(1) == 1 and state is not None and not torch.is_grad_enabled():
            logits, state = self.lm.step(input_ids[:, 0], state)  # (B, V): the path our decoders use
            logits = logits[:, None]  # (B, 1, V)
        else:
            logits, state = self.lm(input_ids, state)  # (B, T, V)
        loss = None
        if labels is not None:  # transformers' convention: labels are the inputs, shifted here
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        new_cache = RecurrentStateCache(state, self.lm, (cache.seen if cache else 0) + input_ids.size(1)) \
            if use_cache else None
        return RecurrentLMOutput(loss=loss, logits=logits, cache=new_cache)
