"""Every checkpoint the project writes resumes exactly: last, best and snapshots
(``checkpoint.every_n_train_steps``) x dropout on/off x stop mid-epoch, at an epoch's end and after a
final validation, each resumed to 14 steps and compared bit for bit (float32) with the uninterrupted run.

A 400-character corpus has 6 training batches per epoch (steps 6 and 12 end epochs); validation every
4 steps. Partial runs (shared by the cases): ``r6`` and ``r9`` stop by ``trainer.max_steps`` (6: the epoch's
end; 9: mid-epoch; both end with a validation the uninterrupted run does not do) and keep every best
checkpoint (``save_top_k=-1``: ``best-step=4`` is a regular validation mid-epoch); ``snap`` writes a
snapshot every 3 steps (3 mid-epoch, 6 the epoch's end, 9 just before its final validation)."""
import shutil

import pytest
import torch
from test_training_resume import compose_train

from lstm_pipeline.training.train import train

BASE = ["model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=4", "batching.bptt=16",
        "batching.eval_batch_size=2", "trainer.enable_progress_bar=false", "sample.max_new_tokens=0",
        "trainer.val_check_interval=4", "trainer.check_val_every_n_epoch=null", "scheduler=none",
        "trainer.precision=32"]
SNAP = ["checkpoint.every_n_train_steps=3", "checkpoint.save_top_k=-1", "checkpoint.monitor=null",
        "checkpoint.filename='step-{step}'"]
PARTIAL = {"r6": ["trainer.max_steps=6", "checkpoint.save_top_k=-1"],
           "r9": ["trainer.max_steps=9", "checkpoint.save_top_k=-1"],
           "snap": ["trainer.max_steps=9", *SNAP]}
#: (kind, stop) -> (partial run, checkpoint file)
CASES = {
    ("last", "epoch end, after a final validation"): ("r6", "last.ckpt"),
    ("last", "mid-epoch, after a final validation"): ("r9", "last.ckpt"),
    ("best", "mid-epoch"): ("r9", "best-step=4.ckpt"),
    ("best", "epoch end, after a final validation"): ("r6", "best-step=6.ckpt"),
    ("best", "mid-epoch, after a final validation"): ("r9", "best-step=9.ckpt"),
    ("snapshot", "mid-epoch"): ("snap", "step-step=3.ckpt"),
    ("snapshot", "epoch end"): ("snap", "step-step=6.ckpt"),
    ("snapshot", "before a final validation"): ("snap", "step-step=9.ckpt"),
}
DROPOUT = {"dropout": ["model.dropout=0.2", "model.dropout_input=0.1"], "no dropout": ["model.dropout=0"]}


def _go(corpus, run_dir, *extra):
    return train(compose_train(["data=text", f"data.path={corpus}", *BASE, f"run_dir={run_dir}", *extra]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus):
    """Per dropout setting: the uninterrupted 14-step run and the partial runs, made once."""
    tmp = tmp_path_factory.mktemp("matrix")
    corpus = tmp / "small.txt"
    corpus.write_text(tiny_corpus.read_text()[:400])
    made = {}

    def get(dropout):
        if dropout not in made:
            root = tmp / dropout.replace(" ", "-")
            _go(corpus, root / "full", *DROPOUT[dropout], "trainer.max_steps=14")
            for name, extra in PARTIAL.items():
                _go(corpus, root / name, *DROPOUT[dropout], *extra)
            made[dropout] = root
        return corpus, made[dropout]
    return get


def _load(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("dropout", sorted(DROPOUT))
@pytest.mark.parametrize("kind,stop", sorted(CASES))
def test_every_checkpoint_resumes_bit_identical(runs, dropout, kind, stop, tmp_path):
    corpus, root = runs(dropout)
    partial, name = CASES[kind, stop]
    ckpt = root / partial / "checkpoints" / name
    assert ckpt.is_file(), sorted(p.name for p in ckpt.parent.iterdir())
    copy = tmp_path / "from.ckpt"  # resumed into a directory of its own: the partial run stays as made
    shutil.copy(ckpt, copy)
    _go(corpus, tmp_path / "resumed", *DROPOUT[dropout], "trainer.max_steps=14", f"ckpt_path={copy}")
    got, want = _load(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), _load(root / "full" / "checkpoints" / "last.ckpt")
    assert got["global_step"] == want["global_step"] == 14
    for k, v in want["state_dict"].items():
        assert v.dtype == torch.float32 and torch.equal(got["state_dict"][k], v), f"{k}: {(got['state_dict'][k] - v).abs().max()}"
    for s, t in zip(got["lstm_pipeline"]["train_state"], want["lstm_pipeline"]["train_state"]):
        assert torch.equal(s, t)
    for k, st in want["optimizer_states"][0]["state"].items():
        assert all(torch.equal(got["optimizer_states"][0]["state"][k][n], x) for n, x in st.items())


def test_a_final_validation_leaves_ntasgd_trigger_history_alone(tmp_path, tiny_corpus):
    """The validation a step-bounded run ends with (step 9, not a multiple of 4) is not one the same run
    extended would do: NT-ASGD's trigger history that a resume restores holds only the regular ones (4, 8)."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(tiny_corpus.read_text()[:400])
    _go(corpus, tmp_path / "run", "optim=ntasgd", "optim.nonmono=5", "trainer.max_steps=9")
    last = _load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 9
    assert len(last["optimizer_states"][0]["param_groups"][0]["val_history"]) == 2
