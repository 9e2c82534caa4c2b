"""Exact resume: 6 steps + resume to 12 equals 12 uninterrupted steps, bit for bit, with dropout,
weight drop, a carried hidden state and the NT-ASGD switch all in play."""
import json
import shutil

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.training.train import train

from helpers import TINY


def compose_train(overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def run(tmp, name, corpus, *extra):
    run_dir = tmp / name
    cfg = compose_train(["data=text", f"data.path={corpus}", *TINY, "sample.max_new_tokens=0",
                         f"run_dir={run_dir}", *extra])
    return run_dir, train(cfg)


REG = ["optim=ntasgd", "optim.lr=2.0", "optim.nonmono=0", "model.dropout=0.2", "model.weight_drop=0.3",
       "model.dropout_input=0.1", "model.dropout_embedding=0.1", "model.ar_alpha=1.0", "model.tar_beta=1.0",
       "trainer.val_check_interval=2", "batching.eval_batch_size=8",
       "scheduler=none"]  # no schedule: a horizon (trainer.max_steps) differs between the half and the full run


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory, tiny_corpus):
    tmp = tmp_path_factory.mktemp("resume")
    full = run(tmp, "full", tiny_corpus, *REG, "trainer.max_steps=8")
    half = run(tmp, "half", tiny_corpus, *REG, "trainer.max_steps=4")
    resumed = run(tmp, "resumed", tiny_corpus, *REG, "trainer.max_steps=8",
                  f"ckpt_path={half[0] / 'checkpoints' / 'last.ckpt'}")
    return full, half, resumed


def test_interrupted_and_resumed_run_equals_uninterrupted(resume_runs):
    (full_dir, full), (half_dir, _), (resumed_dir, resumed) = resume_runs
    half_ckpt = torch.load(half_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert half_ckpt["global_step"] == 4
    assert half_ckpt["optimizer_states"][0]["param_groups"][0]["averaging"]  # switched at step 2
    assert half_ckpt["lstm_pipeline"]["train_state"] is not None
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["val_loss"] == full["val_loss"]
    a = torch.load(full_dir / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 8
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for k, v in a["lstm_pipeline"]["averaged_weights"].items():
        assert torch.equal(v, b["lstm_pipeline"]["averaged_weights"][k]), k
    for s, t in zip(a["lstm_pipeline"]["train_state"], b["lstm_pipeline"]["train_state"]):
        assert torch.equal(s, t)
    assert a["optimizer_states"][0]["param_groups"][0]["switch_step"] == 2


def test_export_uses_averaged_weights_and_metrics_are_complete(resume_runs):
    from safetensors.torch import load_file

    run_dir, result = resume_runs[0]
    for key in ("train_loss", "train_ppl", "train_bits_per_token", "train_bpc", "train_acc", "tokens_per_sec",
                "lr", "train_ar_tar", "val_loss", "val_ppl", "val_bits_per_token", "val_bpc", "val_acc"):
        assert key in result, key
    assert result["train_ppl"] == pytest.approx(torch.exp(torch.tensor(result["train_loss"])).item(), rel=1e-5)
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    ckpt = torch.load(best, weights_only=False)
    exported = load_file(str(run_dir / "model" / "model.safetensors"))
    averaged = ckpt["lstm_pipeline"]["averaged_weights"]
    assert averaged
    for name, w in averaged.items():
        key = name.removeprefix("model.")
        assert torch.equal(exported[key], w) and not torch.equal(exported[key], ckpt["state_dict"][name])


def _state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def _best_score(ckpt):
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))["best_model_score"].item()


def test_resume_a_copied_run_directory(resume_runs, tmp_path, tiny_corpus):
    """A run directory copied elsewhere resumes as it would in place: last.ckpt (not a last-v1.ckpt)
    takes the new state, so a second resume goes on from there, and the chain equals the full run."""
    (full_dir, _), (half_dir, _), _ = resume_runs
    copy = tmp_path / "copy"
    shutil.copytree(half_dir, copy)
    ckpts = copy / "checkpoints"
    run(tmp_path, "copy", tiny_corpus, *REG, "trainer.max_steps=6", f"ckpt_path={copy}")
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 6
    assert not list(ckpts.glob("last-v*.ckpt"))
    assert len(list(ckpts.glob("best-*.ckpt"))) == 1  # the top-1 bookkeeping came along too
    assert torch.load(half_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    _, resumed = run(tmp_path, "copy", tiny_corpus, *REG, "trainer.max_steps=8", f"ckpt_path={copy}")
    last = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert last["global_step"] == 8
    assert not list(ckpts.glob("last-v*.ckpt"))
    full = torch.load(full_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert _state_equal(last["state_dict"], full["state_dict"])
    assert _state_equal(last["lstm_pipeline"]["averaged_weights"], full["lstm_pipeline"]["averaged_weights"])
    assert [p.name for p in ckpts.glob("best-*.ckpt")] == [p.name for p in (full_dir / "checkpoints").glob("best-*.ckpt")]
    assert resumed["best_val_loss"] == pytest.approx(_best_score(full))
    # the CSV log keeps every step, those before each resume included
    header, *rows = (copy / "logs" / "metrics.csv").read_text().splitlines()
    col = header.split(",").index("train_loss")
    steps = [int(r.split(",")[header.split(",").index("step")]) for r in rows if r.split(",")[col]]
    assert steps == list(range(steps[0], 8)) and steps[0] <= 1, steps


@pytest.mark.parametrize("relocate", [shutil.copytree, shutil.move])
def test_resume_a_finished_relocated_run_without_more_steps(relocate, tmp_path, tiny_corpus, capsys):
    """A finished run, copied or moved, resumed with no steps left: a clean end with the usual output,
    the best checkpoint's score and (averaged) weights exported again, as in place."""
    from safetensors.torch import load_file

    run(tmp_path, "orig", tiny_corpus, *REG, "trainer.max_steps=4")
    dest = tmp_path / "dest"
    relocate(tmp_path / "orig", dest)
    ckpts = dest / "checkpoints"
    best_before = [p.name for p in ckpts.glob("best-*.ckpt")]
    exported_before = load_file(str(dest / "model" / "model.safetensors"))
    metrics_before = json.loads((dest / "model" / "config.json").read_text())["metrics"]
    capsys.readouterr()
    _, result = run(tmp_path, "dest", tiny_corpus, *REG, "trainer.max_steps=4", f"ckpt_path={dest}")
    out = capsys.readouterr().out
    assert f"Run directory: {dest}" in out and "Exported model:" in out
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 4
    assert not list(ckpts.glob("last-v*.ckpt"))
    assert [p.name for p in ckpts.glob("best-*.ckpt")] == best_before
    assert result["best_val_loss"] == pytest.approx(_best_score(torch.load(ckpts / best_before[0], weights_only=False)))
    assert _state_equal(load_file(str(dest / "model" / "model.safetensors")), exported_before)
    metrics = json.loads((dest / "model" / "config.json").read_text())["metrics"]
    assert metrics == metrics_before and metrics["val_loss"]  # nothing validated now: the export's are kept


def test_bf16_mixed_precision_trains(tmp_path, tiny_corpus):
    _, result = run(tmp_path, "bf16", tiny_corpus, "trainer.precision=bf16-mixed", "trainer.max_steps=4",
                    "batching.eval_batch_size=8",
                    "trainer.val_check_interval=4")
    assert torch.isfinite(torch.tensor(result["val_loss"])) and result["val_loss"] < 5.0


def test_missing_logger_package_is_a_clear_error(tmp_path, tiny_corpus):
    import importlib.util

    for name in ("wandb", "mlflow"):
        if importlib.util.find_spec(name) is not None:
            continue
        with pytest.raises(ValueError, match=f"logger={name} needs the '{name}' package: pip install {name}"):
            run(tmp_path, name, tiny_corpus, f"logger={name}", "trainer.max_steps=1")


# -- exact resume at any stop point, across epoch boundaries ----------------------------------------
SWEEP = ["model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=4", "batching.bptt=16",
         "batching.eval_batch_size=2", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
         "sample.max_new_tokens=0", "optim=ntasgd", "optim.lr=2.0", "optim.nonmono=0", "model.dropout=0.2",
         "model.weight_drop=0.3", "model.dropout_input=0.1", "trainer.val_check_interval=1",
         "trainer.check_val_every_n_epoch=null", "scheduler=none"]  # no horizon-dependent schedule (see REG)


def test_resume_is_exact_at_every_stop_point_across_epoch_boundaries(tmp_path, tiny_corpus):
    """A 400-character corpus: 6 training batches per epoch, so 14 steps cross two epoch boundaries.
    Stopping after any of the steps around them and resuming ends bit-identical to the uninterrupted
    run: weights, NT-ASGD averages and optimizer state, the carried hidden state. (The reset of the
    hidden state at the start of the epoch after a resumed one used to be skipped, and a resume from
    an epoch's last batch replayed the RNG before the new epoch's dataloader drew from it.)"""
    corpus = tmp_path / "small.txt"
    corpus.write_text(tiny_corpus.read_text()[:400])

    def go(name, *extra):
        cfg = compose_train(["data=text", f"data.path={corpus}", *SWEEP, f"run_dir={tmp_path / name}", *extra])
        return train(cfg)

    go("full", "trainer.max_steps=14")
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    assert full["epoch"] == 2 and full["optimizer_states"][0]["param_groups"][0]["averaging"]
    saved = set()
    for stop in (5, 6, 7, 11, 12, 13):
        go(f"stop{stop}", f"trainer.max_steps={stop}")
        half = torch.load(tmp_path / f"stop{stop}" / "checkpoints" / "last.ckpt", weights_only=True)
        saved.add((half["global_step"], half["epoch"]))
        go(f"stop{stop}", "trainer.max_steps=14", f"ckpt_path={tmp_path / f'stop{stop}'}")
        got = torch.load(tmp_path / f"stop{stop}" / "checkpoints" / "last.ckpt", weights_only=True)
        assert got["global_step"] == 14
        assert _state_equal(got["state_dict"], full["state_dict"]), f"stopped at {stop}"
        assert _state_equal(got["lstm_pipeline"]["averaged_weights"], full["lstm_pipeline"]["averaged_weights"])
        for s, t in zip(got["lstm_pipeline"]["train_state"], full["lstm_pipeline"]["train_state"]):
            assert torch.equal(s, t), f"stopped at {stop}"
        opt_a, opt_b = got["optimizer_states"][0], full["optimizer_states"][0]
        assert opt_a["param_groups"] == opt_b["param_groups"]
        for k, st in opt_b["state"].items():
            assert _state_equal(opt_a["state"][k], st)
    # the stops really straddle both boundaries (steps 6 and 12 start epochs 1 and 2)
    assert {s for s, _ in saved} >= {5, 6, 7, 11, 12, 13} and {e for _, e in saved} == {0, 1, 2}, saved


def _lr_by_step(run_dir):
    import csv

    with open(run_dir / "logs" / "metrics.csv") as f:
        return {int(r["step"]): float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")}


SCHEDULES = {  # every shipped schedule (conf/scheduler/*.yaml), set to act within 20 steps
    "cosine": ["scheduler=cosine"],
    "warmup_cosine": ["scheduler=warmup_cosine", "scheduler.warmup_steps=4"],
    "step": ["scheduler=step", "scheduler.step_size=3"],
    "plateau": ["scheduler=plateau", "scheduler.patience=0"],
    "exponential_after": ["scheduler=exponential_after", "scheduler.start=1", "scheduler.gamma=0.5"],
    # step-bounded here (a time-bounded run's resume: test_training_budget.py)
    "warmup_cosine_time": ["scheduler=warmup_cosine_time", "scheduler.warmup_fraction=0.2"],
    "none": ["scheduler=none"],
}


def test_every_shipped_schedule_is_covered():
    from importlib import resources

    shipped = {p.name[:-5] for p in resources.files("lstm_pipeline.conf").joinpath("scheduler").iterdir()
               if p.name.endswith(".yaml")}
    assert shipped <= set(SCHEDULES), shipped - set(SCHEDULES)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_train_longer_stretches_the_schedule_to_the_new_horizon(name, tmp_path, tiny_corpus):
    """``ckpt_path=<run> trainer.max_steps=20`` after 10 steps: from step 10 on, the learning rate is
    the one of a run planned for 20 steps (cosine no longer climbs back to its peak past the old
    horizon, warmup_cosine no longer stays at 0)."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(tiny_corpus.read_text()[:400])
    common = ["data=text", f"data.path={corpus}", *(o for o in SWEEP if not o.startswith("optim")), "optim=sgd", "optim.lr=1.0", *SCHEDULES[name]]

    def go(run_name, *extra):
        return train(compose_train([*common, f"run_dir={tmp_path / run_name}", *extra]))

    go("planned", "trainer.max_steps=20")
    go("extended", "trainer.max_steps=10")
    assert torch.load(tmp_path / "extended" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    go("extended", "trainer.max_steps=20", f"ckpt_path={tmp_path / 'extended'}")
    planned, extended = _lr_by_step(tmp_path / "planned"), _lr_by_step(tmp_path / "extended")
    later = [s for s in planned if s >= 10]
    assert len(later) == 10, (planned, extended)
    assert [extended[s] for s in later] == pytest.approx([planned[s] for s in later], rel=1e-6, abs=1e-9)
    if name in ("cosine", "warmup_cosine", "warmup_cosine_time"):  # a real decay over the new horizon, neither stuck nor climbing
        lrs = [extended[s] for s in later]
        assert lrs == sorted(lrs, reverse=True) and lrs[0] > 0.1 and lrs[-1] < 0.05, lrs
