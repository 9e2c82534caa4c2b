"""Generation steps read cached weight layouts; the cache must follow every change of the weights."""
import pytest
import torch

from lstm_pipeline.models.lm import RecurrentLM


@pytest.mark.parametrize("cell", [{"name": "lstm"}, {"name": "lstm", "proj_size": 6}, {"name": "gru"}])
def test_step_equals_forward_before_and_after_weights_change(cell):
    torch.manual_seed(0)
    model = RecurrentLM(17, cell, embedding_dim=8, hidden_size=12, num_layers=2).eval()
    tokens = torch.randint(0, 17, (3, 5))

    def stepped():
        state, out = model.init_state(3), []
        with torch.inference_mode():
            for t in range(tokens.size(1)):
                logits, state = model.step(tokens[:, t], state)
                out.append(logits)
        return torch.stack(out, 1)

    with torch.no_grad():
        assert torch.allclose(stepped(), model(tokens)[0], atol=1e-5)
        for p in model.parameters():  # in-place update, as an optimiser or load_state_dict does
            p.add_(0.1 * torch.randn_like(p))
        assert torch.allclose(stepped(), model(tokens)[0], atol=1e-5)
