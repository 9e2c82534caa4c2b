"""``transformers`` adapter (optional extra ``hf``): importing this package registers our
architecture with ``AutoConfig`` / ``AutoModelForCausalLM`` under ``model_type`` ``lstm_pipeline``,
so that an exported model directory works with ``AutoModelForCausalLM.from_pretrained``,
``generate()`` (the recurrent state is the generation cache) and ``pipeline("text-generation")``.
"""
from __future__ import annotations

from ..extras import requires

requires("hf", "transformers", "lstm_pipeline.hf_adapter")

from .configuration import LstmPipelineConfig
from .modeling import LstmPipelineForCausalLM, RecurrentStateCache


def register() -> None:
    """Register with the Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(LstmPipelineConfig.model_type, LstmPipelineConfig)
    except ValueError:  # already registered
        pass
    try:
        AutoModelForCausalLM.register(LstmPipelineConfig, LstmPipelineForCausalLM)
    except ValueError:
        pass


register()

__all__ = ["LstmPipelineConfig", "LstmPipelineForCausalLM", "RecurrentStateCache", "register"]
