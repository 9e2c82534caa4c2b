"""Hydra multirun: `-m model.hidden_size=16,24` trains one run per value, each in its own directory."""
import json

from helpers import TINY


def test_multirun_sweep_gives_each_run_its_own_directory(tmp_path, tiny_corpus, cli_in_process):
    sweep = tmp_path / "sweep"
    proc = cli_in_process("train", "-m", "data=text", f"data.path={tiny_corpus}", *TINY, "model.hidden_size=16,24",
                   "trainer.max_steps=2", "trainer.val_check_interval=2", "batching.eval_batch_size=8",
                   "sample.max_new_tokens=0", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    sizes = {}
    for sub in ("0", "1"):
        run_dir = sweep / sub
        assert (run_dir / "checkpoints" / "last.ckpt").is_file(), (sorted(p.name for p in run_dir.rglob("*")), proc.stdout[-2000:])
        assert (run_dir / "logs" / "metrics.csv").is_file()
        sizes[sub] = json.loads((run_dir / "model" / "config.json").read_text())["model"]["hidden_size"]
    assert sizes == {"0": 16, "1": 24}
