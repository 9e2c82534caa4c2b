"""The carried-state pass (evaluation/stream.py): its invariant, and that every evaluation (the plain
scoring, the cache, dynamic evaluation, the Lightning validation) is that one pass."""
import math

import numpy as np
import pytest
import torch

from lstm_pipeline.data.batching import StreamBatches
from lstm_pipeline.evaluation.cache import cache_evaluate
from lstm_pipeline.evaluation.dynamic import dynamic_evaluate
from lstm_pipeline.evaluation.metrics import ScoreTotals, loss_metrics
from lstm_pipeline.evaluation.scoring import evaluate_ids
from lstm_pipeline.evaluation.stream import carried_windows
from lstm_pipeline.training.module import LanguageModelTask

V = 20
MODEL = {"embedding_dim": 16, "hidden_size": 32}


def tiny_model(cell, seed=0, **kw):
    torch.manual_seed(seed)
    from lstm_pipeline.models.lm import RecurrentLM

    return RecurrentLM(V, {"name": cell}, **MODEL, **{"num_layers": 1, **kw}).eval()


IDS = np.random.default_rng(0).integers(0, V, 302)  # 301 inputs: 3 rows of 100, one tail token unscored


@pytest.mark.parametrize("cell,layout", [("lstm", {}), ("lstm_cell", {}), ("gru", {"num_layers": 2})],
                         ids=["fused-lstm", "custom-lstm-cell", "gru-2-layers"])
@pytest.mark.parametrize("bptt", [1, 7, 100, 500])
def test_carried_windows_equal_one_forward_pass_over_each_row(cell, layout, bptt):
    """Row b's windows, concatenated, are one forward pass over ids[b*L : b*L + L] from the zero state,
    whatever bptt; each target is scored once, at its own position; every window is B rows."""
    model, B = tiny_model(cell, **layout), 3
    L = (len(IDS) - 1) // B
    with torch.no_grad():
        windows = list(carried_windows(model, IDS, B, bptt))
        full, _ = model(torch.tensor(np.stack([IDS[b * L:b * L + L] for b in range(B)])), None)  # (B, L, V)
    assert len(windows) == math.ceil(L / bptt) and all(w.x.shape == w.y.shape == w.positions.shape for w in windows)
    logits = torch.cat([w.out for w in windows], 1)
    torch.testing.assert_close(logits, full, atol=1e-5, rtol=0)
    positions = np.concatenate([w.positions for w in windows], 1)  # (B, L)
    np.testing.assert_array_equal(positions, np.arange(B)[:, None] * L + np.arange(1, L + 1)[None, :])
    np.testing.assert_array_equal(torch.cat([w.y for w in windows], 1).numpy(), IDS[positions])
    np.testing.assert_array_equal(torch.cat([w.x for w in windows], 1).numpy(), IDS[positions - 1])


def test_no_gradient_crosses_a_window_boundary():
    """With gradients on (dynamic evaluation), window i+1 starts from window i's state detached."""
    model = tiny_model("lstm_cell")
    it = carried_windows(model, IDS, 2, 10)
    first, second = next(it), next(it)
    (g,) = torch.autograd.grad(second.out.sum(), first.out, allow_unused=True)
    assert g is None
    assert all(p.grad is None for p in model.parameters())  # the iterator itself accumulates nothing
    assert second.out.requires_grad


def test_loss_metrics():
    m = loss_metrics(2 * math.log(2) * 10, 10, chars_per_token=4.0)
    assert m == pytest.approx({"loss": 2 * math.log(2), "ppl": 4.0, "bits_per_token": 2.0, "tokens": 10, "bpc": 0.5})
    assert "bpc" not in loss_metrics(1.0, 1)
    assert loss_metrics(0.0, 0)["loss"] == 0.0  # an empty pass: no ZeroDivisionError
    assert loss_metrics(1e6, 1)["ppl"] == math.exp(50)  # capped


def test_lightning_validation_scores_exactly_what_evaluate_scores():
    """The module's validation step (windows from the datamodule: StreamBatches) takes the carried
    pass's step and the same totals as ``evaluate_ids``: the same loss and accuracy, to the bit."""
    task = LanguageModelTask({"cell": {"name": "lstm"}, **MODEL}, V, {"_target_": "torch.optim.SGD", "lr": 0.1}).eval()
    task._eval_start("validation")
    with torch.no_grad():
        for batch in StreamBatches(IDS, 3, 16, split="validation"):
            task.validation_step(batch, 0)
    got = ScoreTotals.metrics(task._eval["validation"]["totals"].totals, chars_per_token=2.0)
    want = evaluate_ids(task.model, IDS, batch_size=3, bptt=16, chars_per_token=2.0)
    assert got["loss"] == want["loss"] and got["acc"] == want["acc"] and got["tokens"] == want["tokens"] == 300
    assert got["bpc"] == want["bpc"] == want["bits_per_token"] / 2.0


def test_cache_and_dynamic_evaluation_read_the_same_pass():
    """With the cache off (lam=0) and no step (lr=0), both are the plain pass, for any window length."""
    model = tiny_model("lstm_cell", seed=3)
    for bptt in (5, 64):
        base = evaluate_ids(model, IDS, batch_size=2, bptt=bptt)
        assert cache_evaluate(model, IDS, 2, bptt, size=10, lam=0.0)["loss"] == pytest.approx(base["loss"], rel=1e-6)
        assert dynamic_evaluate(model, IDS, 2, bptt, lr=0.0, decay=0.0)["loss"] == pytest.approx(base["loss"], rel=1e-6)
