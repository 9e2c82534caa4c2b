"""Mirostat v2: the decoder contract, and that it holds the surprise near its target."""
import math

import pytest
import torch

from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.registry import DECODERS
from lstm_pipeline.testing import DecoderContract
from lstm_pipeline_extras.mirostat import MirostatV2


class TestMirostatContract(DecoderContract):
    def make_decoder(self):
        return MirostatV2(tau=3.0, eta=0.1)


def zipf_model(vocab: int = 400, exponent: float = 1.1) -> RecurrentLM:
    """A real model whose next-token distribution is Zipfian whatever the input."""
    torch.manual_seed(0)
    model = RecurrentLM(vocab, {"name": "lstm"}, embedding_dim=4, hidden_size=4, num_layers=1).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(-exponent * torch.log(torch.arange(1, vocab + 1, dtype=torch.float)))
    return model


def mean_surprise_bits(decoder, model, n: int = 150, rows: int = 32) -> float:
    res = decoder.generate(model, [[1]] * rows, max_new_tokens=n, generator=torch.Generator().manual_seed(3))
    return -sum(res.scores) / (rows * n * math.log(2))  # scores are natural-log model log-probs


@pytest.mark.parametrize("tau", [2.5, 4.0])
def test_observed_surprise_tracks_tau(tau):
    model = zipf_model()
    bias = model.head.bias.detach()
    entropy = float(-(torch.softmax(bias, 0) * torch.log_softmax(bias, 0)).sum()) / math.log(2)
    assert entropy > tau + 1.0  # plain sampling would sit near the entropy, well above tau
    got = mean_surprise_bits(MirostatV2(tau=tau, eta=0.1), model)
    assert abs(got - tau) < 0.3, f"mean surprise {got:.2f} bits, target {tau}"


def test_registered_and_validated():
    assert DECODERS.get("mirostat") is MirostatV2
    assert DECODERS.entries()["mirostat"].distribution == "lstm-pipeline-extras"
    with pytest.raises(ValueError, match="tau"):
        MirostatV2(tau=0)
    with pytest.raises(ValueError, match="eta"):
        MirostatV2(eta=-1)
