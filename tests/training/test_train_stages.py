"""Training's stages seen from outside: one source of the batching defaults, batching callbacks built from
the config (nothing flows back from the datamodule), and a rewritten model retiring what was derived
from the previous one (export/, eval*.json)."""
import dataclasses
import inspect

from lstm_pipeline.config.schema import BatchingSchema
from lstm_pipeline.data.datamodule import StreamDataModule
from lstm_pipeline.data.vbptt import VariableBPTTScaler
from lstm_pipeline.training.run_callbacks import batching_callbacks

from helpers import TINY


def test_datamodule_defaults_are_the_schemas():
    params = inspect.signature(StreamDataModule.__init__).parameters
    fields = {f.name: f.default for f in dataclasses.fields(BatchingSchema)}
    assert set(fields) <= set(params), "every batching.* setting is a StreamDataModule argument"
    drifted = {k: (params[k].default, v) for k, v in fields.items() if k != "seed" and params[k].default != v}
    assert not drifted, f"StreamDataModule defaults differ from BatchingSchema's: {drifted}"
    assert params["bptt"].default == BatchingSchema.bptt == 128


def test_batching_callbacks_come_from_the_config():
    assert not hasattr(StreamDataModule, "callbacks")  # the datamodule hands nothing back to training
    assert batching_callbacks({"bptt": 70, "variable_bptt": False}) == []
    (scaler,) = batching_callbacks({"bptt": 70, "variable_bptt": True})
    assert isinstance(scaler, VariableBPTTScaler) and scaler.bptt == 70


def test_resumed_run_retires_the_exports_and_reports_of_its_previous_model(tmp_path, tiny_corpus, cli_in_process):
    run = tmp_path / "run"
    cli_in_process("train", "data=text", f"data.path={tiny_corpus}", *TINY, "trainer.max_steps=6",
                   "sample.max_new_tokens=0", f"hydra.run.dir={run}", cwd=tmp_path)
    cli_in_process("export", f"run={run}", "format=torchscript", cwd=tmp_path)
    cli_in_process("evaluate", f"run={run}", "splits=[test]", cwd=tmp_path)
    (run / "eval-other.json").write_text("{}")
    derived = ["export/model.step.pt", "eval.json", "eval-other.json"]
    assert all((run / d).is_file() for d in derived)
    (run / "train.log").write_text("")
    cli_in_process("train", f"ckpt_path={run}", "trainer.max_steps=12", cwd=tmp_path)
    assert not any((run / d).exists() for d in derived), "stale artefacts left beside the new model"
    (stale,) = (run / "stale").iterdir()
    assert sorted(str(p.relative_to(stale)) for p in stale.rglob("*") if p.is_file()) == sorted(derived)
    lines = [ln for ln in (run / "train.log").read_text().splitlines() if "was rewritten" in ln]
    assert len(lines) == 1 and "eval.json" in lines[0] and "stale" in lines[0]
    # resumed again with no steps left: the same weights, nothing is stale
    (run / "eval.json").write_text("{}")
    cli_in_process("train", f"ckpt_path={run}", "trainer.max_steps=12", cwd=tmp_path)
    assert (run / "eval.json").is_file() and len(list((run / "stale").iterdir())) == 1
