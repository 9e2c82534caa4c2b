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


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("out", [12, 1000, 1001])  # one block; two blocks; two blocks with padding
@pytest.mark.parametrize("with_bias", [True, False])
def test_step_linear_equals_linear(batch, out, with_bias):
    from lstm_pipeline.cells.base import step_linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(24, out, bias=with_bias)
    x = torch.randn(batch, 24)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the batch-1 path splits the weight into one block per thread
    try:
        with torch.inference_mode():
            for _ in range(2):  # built, then served from the cache
                got = step_linear(layer, "w", x, layer.weight, layer.bias)
                torch.testing.assert_close(got, torch.nn.functional.linear(x, layer.weight, layer.bias))
                assert got.shape == (batch, out)
            with torch.no_grad():
                layer.weight.mul_(-2.0)  # the cached blocks follow an in-place change
            got = step_linear(layer, "w", x, layer.weight, layer.bias)
            torch.testing.assert_close(got, torch.nn.functional.linear(x, layer.weight, layer.bias))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", [{"name": "lstm"}, {"name": "gru"}, {"name": "layernorm_lstm"}])
def test_prefill_gives_the_last_positions_logits_and_state(cell):
    torch.manual_seed(0)
    model = RecurrentLM(17, cell, embedding_dim=8, hidden_size=12, num_layers=2).eval()
    tokens = torch.randint(0, 17, (3, 6))
    with torch.no_grad():
        logits, state = model(tokens)
        last, state2 = model.prefill(tokens)
    torch.testing.assert_close(last, logits[:, -1])
    for a, b in zip(state, state2):
        torch.testing.assert_close(a, b)


def test_onednn_layout_is_shared_by_batches_of_one_power_of_two():
    from lstm_pipeline.kernels import onednn
    from lstm_pipeline.cells.base import step_linear

    if not onednn.available():
        pytest.skip("no oneDNN in this torch build")
    layer = torch.nn.Linear(24, 40)
    with torch.inference_mode():
        for batch in (3, 4, 5):
            x = torch.randn(batch, 24)
            torch.testing.assert_close(step_linear(layer, "w", x, layer.weight, layer.bias),
                                       torch.nn.functional.linear(x, layer.weight, layer.bias))
            if batch == 3:
                first = layer._step_weight_cache["w/onednn"][1]
            if batch == 4:  # 3 and 4 share the layout reordered for 4
                assert layer._step_weight_cache["w/onednn"][1] is first
        assert layer._step_weight_cache["w/onednn"][0][0] == 8  # 5 needs the one for 8


@pytest.mark.parametrize("name", ["lstm_cell", "gru_cell", "rnn", "cifg_lstm", "peephole_lstm", "layernorm_lstm", "min_gru"])
@pytest.mark.parametrize("batch", [1, 3])
def test_custom_cell_generation_steps_equal_forward(name, batch):
    """Without gradients a custom cell steps through step_linear (float32, the fast layouts);
    the result equals its forward over the window."""
    from lstm_pipeline.registry import CELLS

    torch.manual_seed(0)
    cell = CELLS.build({"name": name}, input_size=24, hidden_size=128, num_layers=2, dropout=0.0).eval()
    x = torch.randn(batch, 6, 24)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            y, state = cell(x)
            s, ys = cell.init_state(batch), []
            for t in range(x.size(1)):
                y_t, s = cell.step(x[:, t], s)
                ys.append(y_t)
    finally:
        torch.set_num_threads(threads)
    assert cell.__dict__.get("_step_weight_cache"), "the steps did not go through step_linear"
    torch.testing.assert_close(torch.stack(ys, 1), y, atol=1e-5, rtol=1e-4)
    for a, b in zip(s, state):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_model_that_has_generated_can_still_be_copied_and_pickled():
    """The step caches (oneDNN's reordered weights among them) are not copied or saved: a deepcopy
    (dynamic evaluation makes one) or torch.save of the module starts with empty caches."""
    import copy
    import io

    torch.manual_seed(0)
    model = RecurrentLM(50, {"name": "lstm"}, embedding_dim=16, hidden_size=16, num_layers=2).eval()
    tokens = torch.randint(0, 50, (4, 5))
    with torch.inference_mode():
        _, state = model.prefill(tokens)
        for batch in (4, 1):
            model.step(torch.zeros(batch, dtype=torch.long), tuple(s[:, :batch] for s in state))
    assert model.head._step_weight_cache
    clone = copy.deepcopy(model)
    assert not clone.head._step_weight_cache
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.inference_mode():
        expected = model.step(tokens[:, 0], model.init_state(4))[0]
        for other in (clone, loaded):
            torch.testing.assert_close(other.step(tokens[:, 0], other.init_state(4))[0], expected)
