"""The Python entry point (issue 13): compose with overrides, return the run directory and metrics,
change nothing process-wide (no malloc tuning), raise on bad input leaving no run directory."""
import pytest

from lstm_pipeline import api
from lstm_pipeline.training import malloc

SMALL = ["model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=2", "batching.bptt=8",
         "trainer.max_steps=3", "trainer.enable_progress_bar=false", "sample.max_new_tokens=0"]


def test_train_from_python_returns_run_and_metrics_without_malloc_tuning(tiny_corpus, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(malloc, "tune_malloc", lambda: calls.append(1) or True)
    from lstm_pipeline.training import train as train_module  # where the old code called it

    monkeypatch.setattr(train_module, "tune_malloc", lambda: calls.append(1) or True, raising=False)
    result = api.train(["data=text", f"data.path={tiny_corpus}", *SMALL], run_dir=tmp_path / "run")
    assert result.run_dir == tmp_path / "run" and (result.model_dir / "model.safetensors").is_file()
    assert result.metrics["val_loss"] > 0 and "best_val_loss" in result.metrics  # validated at the last step
    assert (result.run_dir / ".hydra" / "overrides.yaml").is_file()  # `train ckpt_path=<run>` can resume it
    assert calls == []
    # the CLI's own composition: the run directory's config is what was asked for
    cfg, _ = api.compose_train(["model/cell=gru", "trainer.accumulate_grad_batches=2"], run_dir=tmp_path / "x")
    assert cfg.model.cell.name == "gru" and cfg.trainer.accumulate_grad_batches == 2 and cfg.run_dir == str(tmp_path / "x")


def test_train_from_python_raises_on_bad_input(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="trainer.max_steps='abc' is not valid"):
        api.train(["data=text", f"data.path={tiny_corpus}", *SMALL, "trainer.max_steps=abc"], run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_compose_takes_every_data_setting_and_token_values_as_the_cli_does(tmp_path):
    """data.encoding_errors with data=text, and data.eos_token=<eos>, compose from Python as on the command line."""
    cfg, _ = api.compose_train(["data=text", "data.path=x.txt", "data.encoding_errors=replace", "data.eos_token=<eos>",
                                "data.max_row_chars=0"], run_dir=tmp_path / "x")
    assert (cfg.data.encoding_errors, cfg.data.eos_token, cfg.data.max_row_chars) == ("replace", "<eos>", 0)
    with pytest.raises(ValueError, match="decoding=<x>: Hydra cannot read"):
        api.compose_train(["decoding=<x>"], run_dir=tmp_path / "y")
