"""A real tiny run through the Hub-facing features: its model card, transformers on its export
directory, evaluate with every option, plot overlay, push (dry run)."""
import json

import pytest
import torch

from lstm_pipeline.artifacts.model_dir import load_pretrained
from lstm_pipeline.registry import DECODERS

from helpers import run_cli


def test_model_card_of_a_real_run(tiny_run):
    card = (tiny_run / "model" / "README.md").read_text()
    config = json.loads((tiny_run / "model" / "config.json").read_text())
    assert f"| validation | bpc | {config['metrics']['val_bpc']:.4f} |" in card
    assert '"name": "text"' in card and "| layers x hidden size | 2 x 32 |" in card
    sample = card.split("```text\n")[1].split("\n```")[0]
    assert sample.startswith("ROMEO:")  # the run's sample prompt (sample.prompt)
    gen = json.loads((tiny_run / "model" / "generation_config.json").read_text())
    assert gen["decoding"] == {"name": "sample", "temperature": 0.8} and gen["max_new_tokens"] == 20


def test_transformers_generate_on_a_trained_run_equals_our_greedy(tiny_run):
    pytest.importorskip("transformers")
    import lstm_pipeline.hf_adapter  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model, tok, _ = load_pretrained(tiny_run)
    hf = AutoModelForCausalLM.from_pretrained(tiny_run / "model").eval()
    hf_tok = AutoTokenizer.from_pretrained(tiny_run / "model")
    ids = tok.encode("ROMEO:")
    assert hf_tok("ROMEO:")["input_ids"] == ids
    theirs = hf.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)[0, len(ids):].tolist()
    assert theirs == DECODERS.build({"name": "greedy"}).generate(model, [ids], max_new_tokens=40).sequences[0]
    text = pipeline("text-generation", model=hf, tokenizer=hf_tok)("ROMEO:", max_new_tokens=40, do_sample=False)
    assert text[0]["generated_text"] == "ROMEO:" + hf_tok.decode(theirs, skip_special_tokens=True)


def test_evaluate_with_every_option_writes_the_report(tiny_run, tmp_path, cli_in_process):
    report = tmp_path / "report.json"
    out = cli_in_process("evaluate", f"run={tiny_run}", "splits=[validation]", "batch_size=2", "bptt=32",
                         "dump_logprobs=true", "dynamic_eval.enabled=true", "cache.enabled=true",
                         "generation.enabled=true", "generation.num_samples=3", "generation.max_new_tokens=30",
                         f"report={report}").stdout
    assert "dynamic eval:" in out and "neural cache:" in out and "self-BLEU-4" in out
    r = json.loads(report.read_text())
    v = r["validation"]
    assert {"loss", "ppl", "bpc", "dynamic_eval", "cache", "logprobs_file"} <= set(v)
    rows = (tiny_run / "eval" / "validation.logprobs.tsv").read_text().splitlines()
    assert rows[0] == "position\ttoken_id\ttoken\tlogprob" and len(rows) == v["tokens"] + 1
    total = sum(float(line.split("\t")[3]) for line in rows[1:])
    assert abs(-total / v["tokens"] - v["loss"]) < 1e-4
    g = r["generation"]
    assert g["num_samples"] == 3 and g["tokens"] == 90 and 0 <= g["self_bleu_4"] <= 1 and g["own_ppl"] > 1


def test_plot_overlays_runs(tiny_run, tmp_path, cli_in_process):
    out = cli_in_process("plot", f"run=[{tiny_run},{tiny_run}]", "labels=[a,b]", f"out={tmp_path}").stdout
    for metric in ("loss", "bpc", "lr", "tokens_per_sec"):
        png = tmp_path / f"{metric}.png"
        assert f"wrote {png}" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_plot_without_logs_is_a_clear_error(tmp_path, capsys):
    from lstm_pipeline.cli import main

    with pytest.raises(SystemExit):
        main(["plot", f"run={tmp_path}"])
    assert f"run={tmp_path} has no metrics.csv" in capsys.readouterr().err


def test_push_dry_run_lists_the_commit(tiny_run, monkeypatch, capsys):
    out = run_cli("push", f"run={tiny_run}", "repo_id=me/tiny-lstm", "dry_run=true").stdout
    assert "Would upload 6 files to https://huggingface.co/me/tiny-lstm" in out
    mirror = run_cli("push", f"run={tiny_run}", "repo_id=me/tiny-lstm", "dry_run=true",
                     env={"HF_ENDPOINT": "https://hub.example.org"}).stdout
    assert "Would upload 6 files to https://hub.example.org/me/tiny-lstm" in mirror  # the Hub actually used
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "generation_config.json", "README.md"):
        assert f in out
    # a real push stops at huggingface_hub's first network call, with a clear message
    import huggingface_hub.constants

    from lstm_pipeline.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit):
        main(["push", f"run={tiny_run}", "repo_id=me/tiny-lstm"])
    assert "Could not reach the Hugging Face Hub" in capsys.readouterr().err
