"""Training end to end (real Lightning Trainer, through the CLI) with the new sources,
tokenizers and batching modes."""
import json

import pytest

from helpers import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jsonl_dataset(tmp_path_factory, tiny_corpus):
    """A local dataset directory with its own splits, one paragraph per row."""
    d = tmp_path_factory.mktemp("ds") / "plays"
    d.mkdir()
    paras = [p for p in tiny_corpus.read_text().split("\n\n") if p.strip()]
    n = len(paras)
    for split, part in (("train", paras[: n - 20]), ("valid", paras[n - 20: n - 10]), ("test", paras[n - 10:])):
        (d / f"{split}.jsonl").write_text("".join(json.dumps({"body": p}) + "\n" for p in part))
    return d


def test_documents_mode_with_files_source_and_byte_bpe(tmp_path, jsonl_dataset, cli_in_process):
    run = tmp_path / "run"
    out = cli_in_process("train", "data=files", "data.path={train: train.jsonl, valid: valid.jsonl, test: test.jsonl}",
                         f"data.data_dir={jsonl_dataset}", "data.text_column=body", "data.eos_token='<eos>'", "tokenizer=byte_bpe", "tokenizer.vocab_size=300",
                         "batching.mode=documents", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert "val_loss" in out.stdout
    tok = json.loads((run / "tokenizer.json").read_text())
    assert tok["model"]["type"] == "BPE" and any(t["content"] == "<eos>" for t in tok["added_tokens"])
    cfg = json.loads((run / "model" / "config.json").read_text())
    gen = json.loads((run / "model" / "generation_config.json").read_text())
    eos = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<eos>")
    # trained with an end-of-text token: it is recorded, generation stops there, and a text starts after it
    assert cfg["eos_token"] == "<eos>" and cfg["bos_token_id"] == eos and gen["eos_token_id"] == eos
    out = cli_in_process("generate", f"run={run}", "prompt=", "max_new_tokens=40", "seed=1", cwd=tmp_path).stdout
    assert "<eos>" not in out


def test_streaming_hub_source_on_a_local_dataset_directory(tmp_path, jsonl_dataset, cli_in_process):
    run = tmp_path / "run"
    cli_in_process("train", "data=hub", f"data.path={jsonl_dataset}", "data.text_column=body", "data.streaming=true",
                   "tokenizer=word", "tokenizer.min_frequency=2", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    header, *rows = next(run.rglob("metrics.csv")).read_text().splitlines()
    col = header.split(",").index("val_loss")
    assert sum(1 for r in rows if r.split(",")[col]) == 2  # validated at steps 6 and 12
    assert (run / "model" / "model.safetensors").is_file()
    # evaluate scores whole splits: it says how to name data it can prepare, and then does
    bad = cli_in_process("evaluate", f"run={run}", check=False)
    assert bad.returncode == 1 and "data.streaming=false" in bad.stderr and "Traceback" not in bad.stderr
    out = cli_in_process("evaluate", f"run={run}", "data=hub", f"data.path={jsonl_dataset}", "data.text_column=body",
                         "data.streaming=false", "splits=[validation]", "batch_size=2", "bptt=8").stdout
    assert "validation: loss" in out
