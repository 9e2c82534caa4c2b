"""A thin adapter that lets transformers' own ``generate`` run one of our RecurrentLM models.

It re-runs the whole sequence through the fused forward at every step (no cache): slow, but
exactly the model's function, so beam search bookkeeping can be compared with ours."""
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput


class RecurrentAdapterConfig(PretrainedConfig):
    model_type = "lstm_pipeline_recurrent_test"


class RecurrentAdapter(PreTrainedModel, GenerationMixin):
    config_class = RecurrentAdapterConfig
    main_input_name = "input_ids"

    def __init__(self, lm):
        super().__init__(RecurrentAdapterConfig(vocab_size=lm.vocab_size, is_decoder=True))
        self.lm = lm
        self.generation_config = GenerationConfig()

    def _init_weights(self, module):  # keep the wrapped model's weights
        pass

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits, _ = self.lm(input_ids)  # (B, T, V)
        return CausalLMOutput(logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}
