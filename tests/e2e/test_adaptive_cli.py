"""model.output=adaptive through the command line: train (word level, the clusters cut on the train
split's frequencies and recorded), then evaluate, generate with beam search, and export TorchScript
and ONNX from the run; the exported step's outputs equal the model's log-probabilities."""
import json

import numpy as np
import torch

from helpers import TINY


def test_train_evaluate_generate_export_an_adaptive_softmax_model(tmp_path, cli_in_process):
    run = tmp_path / "run"
    cli_in_process("train", "tokenizer=word", "tokenizer.vocab_size=400", "model.output=adaptive",
                   "model.adaptive_cutoffs=[20,100]", *TINY, f"hydra.run.dir={run}", "trainer.max_steps=6",
                   "trainer.val_check_interval=3", cwd=tmp_path)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["model"]["output"] == "adaptive" and config["model"]["adaptive_cutoffs"] == [20, 100]
    assert config["model"]["adaptive_div_value"] == 4.0 and config["model"]["adaptive_head_bias"] is False
    assert config["adaptive_order"].startswith("train split token frequency")
    assert "| output layer | adaptive softmax: cutoffs [20, 100], div_value 4.0" in (run / "model" / "README.md").read_text()

    from lstm_pipeline.data.pipeline import prepare_corpus
    from lstm_pipeline.artifacts.model_dir import load_pretrained

    model, tokenizer, _ = load_pretrained(run / "model")
    corpus = prepare_corpus(config["data"], config["tokenizer"], tokenizer_path=run / "tokenizer.json")
    counts = np.bincount(np.asarray(corpus.ids["train"], dtype=np.int64), minlength=model.vocab_size)
    rank = model.adaptive_rank.numpy()
    assert (np.diff(counts[np.argsort(rank)]) <= 0).all()  # rank order is frequency order

    for extra in ([], ["cache.enabled=true"], ["dynamic_eval.enabled=true"]):  # the log-probabilities as logits
        cli_in_process("evaluate", f"run={run}", "splits=[validation]", "batch_size=4", "bptt=32", *extra, cwd=tmp_path)
        text = (run / "eval.json").read_text()
        assert "validation" in json.loads(text) and "NaN" not in text and "Infinity" not in text
    out = cli_in_process("generate", f"run={run}", "decoding=beam", "prompt='the king'", "max_new_tokens=5", cwd=tmp_path)
    assert out.stdout.strip()
    ids = torch.tensor([tokenizer.encode("the king is dead and the queen")])
    with torch.no_grad():
        ref, _ = model(ids)
    for fmt in ("torchscript", "onnx"):
        cli_in_process("export", f"run={run}", f"format={fmt}", cwd=tmp_path)
        meta = json.loads((run / "export" / f"model.step.{'pt' if fmt == 'torchscript' else 'onnx'}.json").read_text())
        assert meta["vocab_size"] == model.vocab_size
    ts = torch.jit.load(str(run / "export" / "model.step.pt"))
    state = model.init_state(1)
    for t in range(ids.size(1)):
        lp, *state = ts(ids[:, t], *state)
        torch.testing.assert_close(lp, ref[:, t], atol=1e-5, rtol=0)
