"""budget= parsing, the time-based schedule's shape, trainer.precision=auto's choice (issue 15)."""
import pytest
import torch

from lstm_pipeline.training.budget import auto_precision, cpu_has_native_bf16, parse_budget
from lstm_pipeline.training.schedules import WarmupCosineTime


@pytest.mark.parametrize("text, seconds", [("120s", 120), ("2m", 120), ("1h30m", 5400), ("2m30s", 150),
                                           ("90", 90), (90, 90), ("1.5h", 5400), ("00:00:02:00", 120),
                                           ("0.5m", 30), ("1d", 86400)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["2 minutes", "", "0s", "-5", "2x", "m", "1:2"])
def test_parse_budget_rejects_with_one_line(bad):
    with pytest.raises(ValueError, match=r"is not a training time.*budget=2m"):
        parse_budget(bad)


def test_warmup_cosine_time_follows_its_progress_and_ends_at_the_floor():
    clock = {"p": 0.0}
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = WarmupCosineTime(opt, warmup_fraction=0.1, min_lr_ratio=0.05, progress=lambda step: clock["p"])
    seen = []
    for p in (0.05, 0.1, 0.55, 1.0, 1.3):
        clock["p"] = p
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen[0] == pytest.approx(0.5)          # half-way through the warm-up
    assert seen[1] == pytest.approx(1.0)          # the peak
    assert seen[2] == pytest.approx(0.05 + 0.95 * 0.5)  # half-way through the decay
    assert seen[3] == pytest.approx(0.05) and seen[4] == pytest.approx(0.05)  # the floor, and it stays there
    assert "_progress" not in sched.state_dict()  # the clock is the trainer's, never pickled


def test_warmup_cosine_time_rejects_bad_settings():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        WarmupCosineTime(opt, warmup_fraction=1.5)


def test_auto_precision_follows_the_cpu():
    precision, reason = auto_precision("cpu")
    assert precision == ("bf16-mixed" if cpu_has_native_bf16() else "32-true")
    assert reason
    assert auto_precision("mps")[0] == "32-true"


@pytest.mark.parametrize("cell", ["rnn", "layernorm_lstm", "lstm_cell", "gru_cell", "peephole_lstm", "cifg_lstm",
                                  "min_gru", "lstm", "gru"])
def test_every_cell_trains_under_bf16_autocast(cell):
    """trainer.precision=auto picks bf16-mixed on this kind of CPU: every built-in cell's backward runs
    under autocast (the custom cells' recurrent-weight GEMM mixed float32 and bfloat16 and failed)."""
    from lstm_pipeline.models.lm import RecurrentLM

    torch.manual_seed(0)
    model = RecurrentLM(11, cell={"name": cell}, embedding_dim=8, hidden_size=8, num_layers=2, dropout=0.0)
    x = torch.randint(0, 11, (2, 5))
    state = None
    for _ in range(2):  # the second window starts from the carried state, as training does
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as Lightning's bf16-mixed runs training_step
            features, state, _ = model.features_train(x, state)
            loss, _, _ = model.head_loss(features, x)
        model.zero_grad()
        loss.backward()
        state = tuple(s.detach() for s in state)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all(), name
