"""Budgeted training (issue 15): ``budget=`` / ``trainer.max_time`` stop the run at its time, the
time-based schedule (``scheduler=warmup_cosine_time``) ends exactly there, the run validates and
exports as a step-bounded one does, and a resumed run goes on counting the time already spent."""
import csv
import math

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.checks import check
from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.training.train import train

from helpers import TINY

BUDGET = ["trainer.max_steps=-1", "scheduler=warmup_cosine_time", "trainer.val_check_interval=100000",
          "trainer.precision=auto", "optim.lr=0.003"]
TOLERANCE_S = 2.5  # one step and the final validation of a tiny model, on a loaded machine


def compose_train(overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def run(run_dir, corpus, *extra):
    cfg = compose_train(["data=text", f"data.path={corpus}", *TINY, "sample.max_new_tokens=0",
                         f"run_dir={run_dir}", *BUDGET, *extra])
    check("train", cfg)  # as api.train and the CLI do
    return train(cfg)


def timer_elapsed(run_dir) -> float:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["callbacks"]["Timer"]["time_elapsed"]["train"]


def lrs(run_dir) -> list[tuple[int, float]]:
    rows = csv.DictReader(open(run_dir / "logs" / "metrics.csv"))
    return [(int(r["step"]), float(r["lr"])) for r in rows if r.get("lr")]


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory, tiny_corpus):
    run_dir = tmp_path_factory.mktemp("budget") / "run"
    return run_dir, run(run_dir, tiny_corpus, "budget=5s")


def test_budget_stops_the_run_at_its_time_and_exports(budget_run):
    run_dir, result = budget_run
    assert 5.0 <= timer_elapsed(run_dir) <= 5.0 + TOLERANCE_S
    assert (run_dir / "model" / "config.json").is_file()  # validated and exported as any run
    assert math.isfinite(result["val_loss"]) and "best_val_loss" in result


def test_time_schedule_warms_up_then_ends_at_its_final_value(budget_run):
    run_dir, _ = budget_run
    seq = lrs(run_dir)
    assert len(seq) > 20
    peak = max(lr for _, lr in seq)
    assert seq[0][1] < 0.5 * peak                # warm-up: the first step is far below the peak
    assert abs(peak - 3e-3) < 3e-4              # optim.lr is reached
    assert seq[-1][1] <= 0.02 * peak             # cosine to min_lr_ratio=0 when the budget ends
    assert all(b <= a + 1e-12 for (_, a), (_, b) in zip(seq[len(seq) // 4:], seq[len(seq) // 4 + 1:]))


def test_resumed_budget_counts_the_time_already_spent(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    run(run_dir, tiny_corpus, "budget=3s")
    first = timer_elapsed(run_dir)
    last_step = lrs(run_dir)[-1][0]
    run(run_dir, tiny_corpus, "budget=6s", f"ckpt_path={run_dir}")
    assert 6.0 <= timer_elapsed(run_dir) <= 6.0 + TOLERANCE_S
    resumed = [(s, lr) for s, lr in lrs(run_dir) if s > last_step]
    assert resumed, "the resumed run trained no step"
    # the schedule goes on from where 3 s of 6 put it (not from its warm-up): progress >= first / 6
    from lstm_pipeline.training.schedules import WarmupCosineTime

    sched = WarmupCosineTime(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-3))
    assert resumed[0][1] <= 3e-3 * sched.factor(first / 6.0 - 0.05) + 1e-9
    assert resumed[0][1] >= 3e-3 * sched.factor(first / 6.0 + 0.25) - 1e-9
    assert resumed[-1][1] <= 0.02 * 3e-3


def test_bad_budget_is_one_line(tmp_path, tiny_corpus):
    from lstm_pipeline.registry import ConfigError

    with pytest.raises(ConfigError, match=r"budget=2 minutes is not a training time.*budget=2m"):
        run(tmp_path / "bad", tiny_corpus, "budget=2 minutes")
    with pytest.raises(ConfigError, match="both limit the training time"):
        run(tmp_path / "both", tiny_corpus, "budget=2m", "+trainer.max_time=00:00:01:00")


def test_precision_auto_is_resolved_and_said_once(caplog, tiny_corpus, tmp_path):
    import logging

    from lstm_pipeline.training.budget import cpu_has_native_bf16
    from lstm_pipeline.training.train import trainer_arguments

    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", f"run_dir={tmp_path}", "budget=90s"])
    assert cfg.trainer.precision == "auto"  # the default recipe's
    with caplog.at_level(logging.INFO, logger="lstm_pipeline.training.train"):
        args = trainer_arguments(cfg)
        trainer_arguments(cfg, announce=False)  # the other ranks of a DDP run: silent
    expected = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    assert args["precision"] == expected and args["max_time"] == {"seconds": 90.0}
    said = [r.getMessage() for r in caplog.records if "trainer.precision=auto" in r.getMessage()]
    assert len(said) == 1 and expected in said[0], said


def test_a_step_limit_wins_over_the_budget(caplog, tiny_corpus, tmp_path):
    """trainer.max_steps=N asks for N steps: the default recipe's 2-minute budget does not cut them short."""
    import logging

    from lstm_pipeline.training.train import trainer_arguments

    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", f"run_dir={tmp_path}", "trainer.max_steps=2000"])
    assert cfg.budget == "2m"
    with caplog.at_level(logging.INFO, logger="lstm_pipeline.training.train"):
        args = trainer_arguments(cfg)
    assert "max_time" not in args and args["max_steps"] == 2000
    assert any("budget=2m not applied: trainer.max_steps=2000" in r.getMessage() for r in caplog.records)
