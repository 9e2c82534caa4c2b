"""DDP on the CPU: 2 processes with gloo through the real CLI (Lightning re-executes it per rank)."""
import json
import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from helpers import TINY, run_cli

HERE = Path(__file__).resolve().parent
COMMON = ["model.dropout=0.0", "trainer.max_steps=4", "trainer.val_check_interval=4", "batching.eval_batch_size=4",
          "sample.max_new_tokens=10", "optim=sgd", "optim.lr=1.0",
          "trainer.precision=32-true"]  # the default recipe picks bf16 where the CPU has it: compared to 1e-5 here


class WeightDump(Callback):
    """Each rank writes a checksum of its weights and its carried state's shape when training ends."""

    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()]).double()
        state = pl_module._train_state
        Path(self.path, f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"world": trainer.world_size, "sum": flat.sum().item(), "sq": flat.pow(2).sum().item(),
             "first": flat[:50].tolist(), "state_shape": list(state[0].shape)}))


def test_ddp_two_processes_match_single_process(tmp_path, tiny_corpus):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    cb = ["+callbacks.dump._target_=test_ddp.WeightDump", f"+callbacks.dump.path={dumps}"]
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "LSTM_PIPELINE_ALLOW_TARGETS": "test_ddp.WeightDump"}  # a test's own callback: trusted explicitly
    ddp = run_cli("train", "data=text", f"data.path={tiny_corpus}", *TINY, *COMMON, *cb, "trainer=ddp",
                  "trainer.accelerator=cpu", "trainer.devices=2", "batching.batch_size=2",
                  "batching.eval_batch_size=2",
                  f"hydra.run.dir={tmp_path / 'ddp'}", cwd=tmp_path, env=env, timeout=400)
    r0, r1 = (json.loads((dumps / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["sum"] == r1["sum"] and r0["sq"] == r1["sq"] and r0["first"] == r1["first"]  # ranks in sync
    assert r0["state_shape"][1] == 2  # each rank carries the state of its own 2 streams
    # only rank 0 exports and prints the sample
    assert ddp.stdout.count("--- sample") == 1 and ddp.stdout.count("Exported model:") == 1
    # the same global batch (4 streams; 4 evaluation streams) in one process gives the same model, up to float summation order
    single = run_cli("train", "data=text", f"data.path={tiny_corpus}", *TINY, *COMMON, "batching.batch_size=4",
                     "sample.max_new_tokens=0", f"hydra.run.dir={tmp_path / 'single'}", cwd=tmp_path, timeout=300)
    a = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    ddp_val = json.loads((tmp_path / "ddp" / "model" / "config.json").read_text())["metrics"]["val_loss"]
    single_val = json.loads((tmp_path / "single" / "model" / "config.json").read_text())["metrics"]["val_loss"]
    assert abs(ddp_val - single_val) < 1e-4
    assert "val_loss" in single.stdout
