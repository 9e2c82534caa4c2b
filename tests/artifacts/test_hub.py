"""The Hub-convention model directory, from_pretrained through the HF cache (offline), the push path."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lstm_pipeline
from lstm_pipeline.artifacts.model_dir import ModelDirError, save_pretrained
from lstm_pipeline.artifacts.hub import push_operations, push_to_hub
from lstm_pipeline.generation.pretrained import card_sample
from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.tokenization.base import TextTokenizer
from lstm_pipeline.tokenization.char import CharTokenizer

TEXT = "to be or not to be, that is the question.\n" * 4
CFG = {"cell": {"name": "lstm"}, "embedding_dim": 8, "hidden_size": 16, "num_layers": 2}


def make_model_dir(path: Path, cfg=CFG, seed=0) -> tuple[RecurrentLM, Path]:
    torch.manual_seed(seed)
    tok = TextTokenizer(CharTokenizer().train([TEXT]))
    model = RecurrentLM(tok.vocab_size, **cfg).eval()
    out = save_pretrained(model, cfg, tok, path, extra={
        "bos_token_id": tok.token_to_id("\n"), "metrics": {"val_bpc": 3.25},
        "data": {"name": "text", "path": "x.txt"}, "tokenizer": {"name": "char"},
        "sample": {"prompt": "to be", "max_new_tokens": 30, "temperature": 0.7}}, sample=card_sample)
    return model, out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("hub") / "model")


def test_directory_follows_hub_conventions(model_dir):
    model, d = model_dir
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json"])
    config = json.loads((d / "config.json").read_text())
    # our keys stay, transformers' keys are added
    assert config["format"] == "lstm-pipeline" and config["model"] == model.config and CFG.items() <= {**config["model"], "cell": CFG["cell"]}.items() and config["vocab_size"] == model.vocab_size
    assert config["model_type"] == "lstm_pipeline" and config["architectures"] == ["LstmPipelineForCausalLM"]
    gen = json.loads((d / "generation_config.json").read_text())
    assert gen["decoding"] == {"name": "sample", "temperature": 0.7}
    assert gen["do_sample"] is True and gen["temperature"] == 0.7 and gen["top_k"] == 0 and gen["max_new_tokens"] == 30
    tc = json.loads((d / "tokenizer_config.json").read_text())
    assert tc["unk_token"] == "<unk>" and "bos_token" not in tc  # the newline stays ordinary text


def test_model_card_has_every_section_and_a_reproducible_sample(model_dir, tmp_path):
    _, d = model_dir
    card = (d / "README.md").read_text()
    assert card.startswith("---\n") and "\nlibrary_name: lstm-pipeline\npipeline_tag: text-generation\n" in card
    for section in ("## Architecture", "## Data", "## Tokenizer", "## Metrics", "## Sample", "## How to load"):
        assert section in card
    assert "| validation | bpc | 3.2500 |" in card and "| layers x hidden size | 2 x 16 |" in card
    sample = card.split("```text\n")[1].split("\n```")[0]
    assert sample.startswith("to be") and len(sample.replace("<unk>", "?")) == len("to be") + 30  # 30 characters
    _, d2 = make_model_dir(tmp_path / "again")  # same weights, same seed: same card (but for its directory)
    mine = lambda text, d: re.sub(r"\n- name: \S+\n", "\n- name: X\n", text.replace(str(d), "DIR"))  # noqa: E731
    assert mine((d2 / "README.md").read_text(), d2) == mine(card, d)


def test_from_pretrained_local_dir_roundtrip(model_dir):
    model, d = model_dir
    lm = lstm_pipeline.from_pretrained(d)
    for k, v in model.state_dict().items():
        assert torch.equal(v, lm.model.state_dict()[k])
    x = torch.tensor([lm.tokenizer.encode("to be or")])
    assert torch.equal(lm(x)[0], model(x)[0])
    assert lm.generate("to be", max_new_tokens=15, seed=3) == lm.generate("to be", max_new_tokens=15, seed=3)
    greedy = lm.generate("to be", max_new_tokens=10, decoding={"name": "greedy"})
    assert len(greedy) == 10


def _hub_cache(root: Path, repo_id: str, model_dir: Path, revision: str, ref: str | None) -> Path:
    """Lay out a model as huggingface_hub's cache: models--org--name/{snapshots/<rev>/..., refs/<ref>}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True)
    for f in model_dir.iterdir():
        shutil.copy(f, snap / f.name)
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(revision)
    return snap


def test_from_pretrained_repo_id_from_the_offline_hub_cache(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and HF_HUB_CACHE at a cache laid out like the Hub's:
    main, a tag and a commit hash resolve to their own snapshots; an unknown repo is a clear error."""
    _, d1 = make_model_dir(tmp_path / "v1", seed=1)
    cfg2 = {**CFG, "hidden_size": 24}
    _, d2 = make_model_dir(tmp_path / "v2", cfg=cfg2, seed=2)
    cache = tmp_path / "cache"
    rev1, rev2 = "a" * 40, "b" * 40
    _hub_cache(cache, "org/tiny-lstm", d1, rev1, "v1")
    _hub_cache(cache, "org/tiny-lstm", d2, rev2, "main")
    script = (
        "import lstm_pipeline, sys\n"
        "for rev in (None, 'v1', '" + rev2 + "'):\n"
        "    lm = lstm_pipeline.from_pretrained('org/tiny-lstm', revision=rev)\n"
        "    print(rev, lm.config['model']['hidden_size'], lm.model_dir.parent.name)\n"
        "try:\n"
        "    lstm_pipeline.from_pretrained('org/missing')\n"
        "except FileNotFoundError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "None 24 snapshots" and lines[1] == "v1 16 snapshots" and lines[2] == f"{rev2} 24 snapshots"
    assert lines[3].startswith("ERR 'org/missing' is not a local directory") and "HF_HUB_OFFLINE=1" in lines[3]


def test_push_sends_every_model_file(model_dir, tmp_path):
    _, d = model_dir
    ops = push_to_hub(d, "org/tiny-lstm", dry_run=True)
    assert [op.path_in_repo for op in ops] == ["config.json", "model.safetensors", "tokenizer.json",
                                               "tokenizer_config.json", "generation_config.json", "README.md"]
    for op in ops[:-1]:
        assert Path(op.path_or_fileobj).read_bytes() == (d / op.path_in_repo).read_bytes()
    assert "from_pretrained('org/tiny-lstm')" in ops[-1].path_or_fileobj.decode()  # the card, refreshed for the repo
    # a run directory resolves to its model/
    run = tmp_path / "run"
    shutil.copytree(d, run / "model")
    assert [op.path_in_repo for op in push_operations(run)] == [op.path_in_repo for op in ops]
    lm = lstm_pipeline.from_pretrained(d)
    assert [op.path_in_repo for op in lm.push_to_hub("org/x", dry_run=True)] == [op.path_in_repo for op in ops]
    with pytest.raises(ValueError, match="repo_id=.a/b/c. is not a Hub repo id"):
        push_to_hub(d, "a/b/c", dry_run=True)
    with pytest.raises(ModelDirError, match="holds no exported model"):
        push_to_hub(tmp_path, "org/x", dry_run=True)


def test_push_goes_to_the_network_only_at_the_commit(model_dir, monkeypatch):
    """Offline, the real HfApi refuses at its first network call: nothing before it needs the network."""
    _, d = model_dir
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(Exception) as info:
        push_to_hub(d, "org/tiny-lstm", token="hf_dummy")
    assert "offline" in (str(info.value) + type(info.value).__name__).lower()


@pytest.mark.parametrize("name,overrides,expect", [
    ("push", ["run=r", "repo_id=org/x"], {"dry_run": False, "create_pr": False}),
    ("export", ["run=r", "format=torchscript", "quantize=true"], {"format": "torchscript", "quantize": True}),
    ("plot", ["run=[a,b]"], {"metrics": ["loss", "bpc", "lr", "tokens_per_sec"]}),
    ("evaluate", ["run=r", "cache.enabled=true"], {"dump_logprobs": False}),
])
def test_command_configs_compose_and_reject_typos(name, overrides, expect):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from lstm_pipeline.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose(name, overrides=overrides)
        for k, v in expect.items():
            assert cfg[k] == v
        with pytest.raises(Exception, match="dryrun|quantise|metric|dump_logprob"):
            compose(name, overrides=overrides + [{"push": "dryrun=true", "export": "quantise=true",
                                                   "plot": "metric=[x]", "evaluate": "dump_logprob=true"}[name]])
    GlobalHydra.instance().clear()


def test_the_model_directory_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _, d = make_model_dir(tmp_path / "model")
    finally:
        os.umask(old)
    assert d.stat().st_mode & 0o777 == 0o755  # readable by the group and others, as any directory the user makes


def test_a_new_export_replaces_the_old_in_one_step(tmp_path):
    """Exporting over an existing model directory swaps the two (no moment without a model) and
    leaves no temporary directory behind."""
    _, d = make_model_dir(tmp_path / "model", seed=0)
    first = (d / "model.safetensors").read_bytes()
    _, d = make_model_dir(tmp_path / "model", seed=1)
    assert (d / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
