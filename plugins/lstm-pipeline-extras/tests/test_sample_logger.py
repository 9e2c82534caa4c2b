"""The sample-logging callback inside a real (tiny) training run composed from the configs."""
import re

import pytest

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.data.sources import bundled_corpus
from lstm_pipeline.registry import CALLBACKS
from lstm_pipeline.tokenization.base import TextTokenizer
from lstm_pipeline.training.train import train
from lstm_pipeline_extras.sample_logger import SampleLogger


@pytest.mark.parametrize("accumulate", [1, 2])
def test_samples_are_logged_every_n_steps(tmp_path, accumulate):
    """Every N optimiser steps, once each, also when several batches make one step."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(bundled_corpus().read_text()[:8000])
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=text", f"data.path={corpus}", "callbacks=with_samples", "callbacks.sample_logger.every_n_steps=2",
            "callbacks.sample_logger.max_new_tokens=12", "callbacks.sample_logger.prompt=ROMEO:",
            "model.hidden_size=16", "model.embedding_dim=8", "model.num_layers=1", "batching.batch_size=2",
            "batching.bptt=8", "batching.eval_batch_size=2", "trainer.max_steps=4", "+trainer.limit_val_batches=2",
            "trainer.enable_progress_bar=false", "logger=csv", "sample.max_new_tokens=0",
            f"+trainer.accumulate_grad_batches={accumulate}"])
    cfg.run_dir = str(tmp_path / "run")
    assert set(cfg.callbacks) == {"lr_monitor", "sample_logger"}  # the defaults are kept
    train(cfg)
    text = (tmp_path / "run" / "samples.txt").read_text()
    steps = re.findall(r"=== step (\d+) ===\n", text)
    assert steps == ["2", "4"], text
    tok = TextTokenizer.load(tmp_path / "run")
    for block in text.split("=== step ")[1:]:
        sample = block.split("===\n", 1)[1].rstrip("\n")
        assert sample.startswith("ROMEO:")
        assert len(tok.encode(sample[len("ROMEO:"):])) >= 1


def test_registered():
    assert CALLBACKS.get("sample_logger") is SampleLogger
