"""No silent divergence (issue 12): a non-finite or exploding loss stops the run with one line naming
the step and what to try; a NaN model is never exported nor loaded; a tokenizer that is not the
model's is refused; every JSON written is valid; a preset's optimizer replaced on the command line
leaves none of its own settings behind."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import TINY, run_cli
from lstm_pipeline.artifacts.integrity import ModelIntegrityError, check_finite, json_safe
from lstm_pipeline.registry import ConfigError
from lstm_pipeline.training.module import TrainingDiverged
from lstm_pipeline.training.train import train
from test_training_resume import compose_train

SHORT = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + \
    ["trainer.max_steps=6", "trainer.val_check_interval=3", "sample.max_new_tokens=0"]


def _strict_json(path):
    def bad(c):
        raise AssertionError(f"{path}: {c} is not JSON")
    return json.loads(path.read_text(), parse_constant=bad)


def test_infinite_learning_rate_stops_with_one_line_and_exports_nothing(tmp_path, tiny_corpus, cli_in_process):
    run = tmp_path / "run"
    proc = cli_in_process("train", "data=text", f"data.path={tiny_corpus}", *SHORT, "optim=sgd", "optim.lr=inf",
                          f"hydra.run.dir={run}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "not finite" in err[0] and "at step 1" in err[0] and "optim.lr" in err[0], err
    assert not (run / "model").exists()
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").glob("*.ckpt"))
    for path in run.rglob("*.json"):
        _strict_json(path)


def test_exploding_finite_loss_is_divergence_too(tmp_path, tiny_corpus):
    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", *SHORT, "optim=sgd", "optim.lr=1e6",
                         f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(TrainingDiverged, match=r"validation loss is .* at step 3, more than 5 times .* uniform guess"):
        train(cfg)
    assert not (tmp_path / "run" / "model").exists()


def test_a_nan_model_is_not_exported_and_not_loaded(tiny_run, tmp_path):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(ModelIntegrityError, match=r"1 NaN/inf values in weight"):
        check_finite(model, "x")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    weights = load_file(str(run / "model" / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(run / "model" / "model.safetensors"))
    proc = run_cli("generate", f"run={run}", "max_new_tokens=5", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "refused to load" in proc.stderr and "not finite" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_tokenizer_that_is_not_the_models_is_refused(tiny_run, tmp_path):
    from lstm_pipeline.artifacts.model_dir import load_pretrained
    from lstm_pipeline.tokenization.base import TextTokenizer

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    tok = TextTokenizer.load(run / "model" / "tokenizer.json")
    tok.tk.add_tokens(["an", "extra", "token"])
    tok.save(run / "model" / "tokenizer.json")
    with pytest.raises(ModelIntegrityError, match=r"tokenizer.json has \d+ tokens but the model was trained with"):
        load_pretrained(run)


def test_json_safe_and_the_written_jsons_are_valid(tiny_run):
    assert json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": "x"}) == {"a": None, "b": [1.0, None], "c": "x"}
    for path in tiny_run.rglob("*.json"):
        _strict_json(path)


def test_switching_a_presets_optimizer_drops_its_settings():
    cfg = compose_train(["experiment=awd_lstm_ptb", "optim=adam"])
    assert dict(cfg.optim) == {"_target_": "torch.optim.Adam", "lr": 0.003}
    cfg = compose_train(["experiment=char_rnn", "optim=sgd", "scheduler=cosine"])
    assert cfg.optim._target_ == "torch.optim.SGD" and "alpha" not in cfg.optim
    assert cfg.scheduler._target_.endswith("CosineAnnealingLR")
    # the presets themselves are unchanged
    assert dict(compose_train(["experiment=awd_lstm_ptb"]).optim) == {
        "_target_": "lstm_pipeline.training.ntasgd.NTASGD", "lr": 30.0, "weight_decay": 1.2e-6, "nonmono": 5}
    assert dict(compose_train(["experiment=char_rnn"]).optim) == {"_target_": "torch.optim.RMSprop", "lr": 0.002,
                                                                  "alpha": 0.95, "eps": 2e-10}


def test_a_leftover_optimizer_setting_is_named_before_the_data_is_prepared(tmp_path):
    from lstm_pipeline.config.checks import check

    cfg = compose_train(["optim=adam", "+optim.nonmono=5", f"run_dir={tmp_path / 'run'}", "data=text",
                         f"data.path={tmp_path / 'missing.txt'}"])
    with pytest.raises(ConfigError, match=r"optim \(torch.optim.Adam\) does not take the setting 'nonmono'.*~optim.nonmono"):
        check("train", cfg)
    cfg = compose_train(["scheduler=step", "+scheduler.T_max=5", f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"~scheduler.T_max"):
        check("train", cfg)
