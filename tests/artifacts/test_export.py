"""lstm-pipeline export: the ONNX step module in onnxruntime and the TorchScript one in a fresh
process step 50 tokens with the state as explicit inputs/outputs, equal to PyTorch to 1e-4."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lstm_pipeline.artifacts.model_dir import load_pretrained

from helpers import run_cli

STEPS = 50


def reference_trajectory(run, batch=2):
    """PyTorch: tokens fed (a fixed pseudo-random sequence), logits and states after each step."""
    model, _, _ = load_pretrained(run)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (STEPS, batch), generator=g)
    state = model.init_state(batch)
    out = []
    for t in range(STEPS):
        logits, state = model.step(tokens[t], state)
        out.append((logits.clone(), tuple(s.clone() for s in state)))
    return tokens, model.init_state(batch), out


@pytest.fixture(scope="module")
def exported(tiny_run):
    paths = {}
    for fmt in ("onnx", "torchscript"):
        proc = run_cli("export", f"run={tiny_run}", f"format={fmt}")
        assert "Exported" in proc.stdout
        suffix = ".onnx" if fmt == "onnx" else ".pt"
        paths[fmt] = tiny_run / "export" / f"model.step{suffix}"
        assert paths[fmt].is_file()
        meta = json.loads((tiny_run / "export" / f"model.step{suffix}.json").read_text())
        assert meta["inputs"]["token"] == "int64 (B,)" and "state_1" in meta["inputs"]
    return paths


def test_onnx_in_onnxruntime_matches_pytorch_over_50_steps(tiny_run, exported):
    ort = pytest.importorskip("onnxruntime")
    tokens, state, ref = reference_trajectory(tiny_run)
    sess = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["token", "state_0", "state_1"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "new_state_0", "new_state_1"]
    st = [s.numpy() for s in state]
    for t in range(STEPS):
        logits, *st = sess.run(None, {"token": tokens[t].numpy(), "state_0": st[0], "state_1": st[1]})
        np.testing.assert_allclose(logits, ref[t][0].numpy(), atol=1e-4, rtol=0)
        for a, b in zip(st, ref[t][1]):
            np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)


def test_torchscript_in_a_fresh_process_matches_pytorch_over_50_steps(tiny_run, exported, tmp_path):
    tokens, state, ref = reference_trajectory(tiny_run)
    torch.save({"tokens": tokens, "state": state}, tmp_path / "inputs.pt")
    script = f"""
import torch
m = torch.jit.load({str(exported['torchscript'])!r})
d = torch.load({str(tmp_path / 'inputs.pt')!r})
state, outs = tuple(d["state"]), []
with torch.no_grad():
    for tok in d["tokens"]:
        logits, *state = m(tok, *state)
        outs.append((logits, tuple(state)))
torch.save(outs, {str(tmp_path / 'outputs.pt')!r})
"""
    # a fresh interpreter that never imports lstm_pipeline
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outs = torch.load(tmp_path / "outputs.pt")
    for (logits, st), (rl, rst) in zip(outs, ref, strict=True):
        torch.testing.assert_close(logits, rl, atol=1e-4, rtol=0)
        for a, b in zip(st, rst):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_int8_exports_run_and_stay_close(tiny_run, exported, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from lstm_pipeline.artifacts.export import export_step

    tokens, state, ref = reference_trajectory(tiny_run, batch=1)
    model, _, _ = load_pretrained(tiny_run)
    onnx_q = export_step(model, tmp_path / "q.onnx", "onnx", quantize=True)
    ts_q = export_step(model, tmp_path / "q.pt", "torchscript", quantize=True)
    assert onnx_q.stat().st_size < exported["onnx"].stat().st_size  # int8 weights
    sess = ort.InferenceSession(str(onnx_q), providers=["CPUExecutionProvider"])
    ts = torch.jit.load(str(ts_q))
    st_o, st_t = [s.numpy() for s in state], tuple(state)
    agree_o = agree_t = 0
    for t in range(STEPS):
        lo, *st_o = sess.run(None, {"token": tokens[t].numpy(), "state_0": st_o[0], "state_1": st_o[1]})
        lt, *st_t = ts(tokens[t], *st_t)
        rl = ref[t][0]
        assert np.abs(lo - rl.numpy()).max() < 0.1 and (lt - rl).abs().max() < 0.1
        agree_o += int(lo.argmax() == int(rl.argmax()))
        agree_t += int(lt.argmax() == rl.argmax())
    assert agree_o >= 0.9 * STEPS and agree_t >= 0.9 * STEPS


def test_bad_format_is_a_clear_error(tiny_run, capsys):
    from lstm_pipeline.cli import main

    assert main(["export", f"run={tiny_run}", "format=tflite"]) == 1  # checked before Hydra runs: no SystemExit
    assert "format=tflite is not an export format: use one of format=torchscript, format=onnx" in capsys.readouterr().err


@pytest.mark.parametrize("cell", ["lstm_cell", "gru_cell"])
def test_custom_cell_exports_run_at_other_batch_sizes(cell, tmp_path):
    """A custom cell's step goes through step_linear; traced for export it must record plain
    products (no batch-1 blocked layout, no oneDNN op), so the file runs at any batch size."""
    from lstm_pipeline.artifacts.export import export_step
    from lstm_pipeline.models.lm import RecurrentLM

    torch.manual_seed(0)
    model = RecurrentLM(40, {"name": cell}, embedding_dim=16, hidden_size=160, num_layers=1).eval()
    tokens = torch.randint(0, 40, (3,))
    with torch.inference_mode():
        logits, state = model.step(tokens, model.init_state(3))
    ts = export_step(model, tmp_path / "m.pt", "torchscript", batch_size=1)
    got, *_ = torch.jit.load(str(ts))(tokens, *model.init_state(3))
    torch.testing.assert_close(got, logits, atol=1e-4, rtol=0)
    ort = pytest.importorskip("onnxruntime")
    onnx_path = export_step(model, tmp_path / "m.onnx", "onnx", batch_size=4)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {"token": tokens.numpy(), **{f"state_{i}": s.numpy() for i, s in enumerate(model.init_state(3))}}
    np.testing.assert_allclose(sess.run(None, feed)[0], logits.numpy(), atol=1e-4, rtol=0)
