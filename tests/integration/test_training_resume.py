"""Exact resume: 6 steps + resume to 12 equals 12 uninterrupted steps, bit for bit, with dropout,
weight drop, a carried hidden state and the NT-ASGD switch all in play."""
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config import register_schemas
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
       "trainer.val_check_interval=2", "batching.eval_batch_size=8"]


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
