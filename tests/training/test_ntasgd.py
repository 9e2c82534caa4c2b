"""NTASGDAveraging: NT-ASGD's run side as a Lightning Callback (validation on the averaged weights, the
trigger fed the unrounded validation loss, the averages in the checkpoint, the model averaged at the end)."""
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lstm_pipeline.training.ntasgd import NTASGD, NTASGDAveraging, averaged_weights


class Probe(L.LightningModule):
    """A 1-parameter model whose validation records the weights it sees and reports a rising loss
    (so that NT-ASGD with nonmono=1 switches at the second validation)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.seen, self.val_metrics, self.n_val = [], {}, 0

    def training_step(self, batch, i):
        return ((self.w - batch[0]) ** 2).sum()

    def validation_step(self, batch, i):
        pass

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        self.n_val += 1
        self.seen.append(self.w.detach().clone())
        self.val_metrics = {"val_loss": 1.0 + 0.123456789012 * self.n_val}  # float64, not float32-representable
        self.log("val_loss", self.val_metrics["val_loss"])

    def configure_optimizers(self):
        return NTASGD(self.parameters(), lr=0.1, nonmono=1)


def fit(tmp_path, callbacks):
    probe = Probe()
    data = DataLoader(TensorDataset(torch.randn(64, 3, generator=torch.Generator().manual_seed(0))), batch_size=None)
    trainer = L.Trainer(max_steps=8, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                        callbacks=callbacks)
    trainer.fit(probe, data, data)
    return probe, trainer


def test_callback_validates_on_averages_feeds_exact_losses_and_ends_averaged(tmp_path):
    probe, trainer = fit(tmp_path, [NTASGDAveraging()])
    opt = trainer.optimizers[0]
    g = opt.param_groups[0]
    # the trigger saw the task's float64 losses, not the float32 logged ones
    assert g["val_history"] == [1.0 + 0.123456789012 * n for n in range(1, 5)]
    assert g["averaging"] and g["switch_step"] == 6  # 3rd check (step 6): worse than the best before the last one
    # validations after the switch saw the averages; at the end the model holds them, the average is the raw
    raw = torch.stack(list(opt.averaged().values()))  # swapped: the optimizer now holds the last iterate
    assert torch.equal(probe.w.detach(), probe.seen[-1])  # no step after the last validation: same average
    assert not torch.equal(probe.w.detach(), raw[0])
    # without the callback, NT-ASGD never switches and nothing is swapped
    bare, bare_trainer = fit(tmp_path, [])
    assert not bare_trainer.optimizers[0].averaging and bare_trainer.optimizers[0].param_groups[0]["val_history"] == []
    assert torch.equal(bare.w.detach(), raw[0])  # same training: the last iterate is the bare run's weights


def test_checkpoint_holds_the_averaged_weights_by_name(tmp_path):
    probe, trainer = fit(tmp_path, [NTASGDAveraging()])
    ckpt = {}
    NTASGDAveraging().on_save_checkpoint(trainer, probe, ckpt)
    weights = averaged_weights(ckpt)
    assert list(weights) == ["w"]
    assert torch.equal(weights["w"], next(iter(trainer.optimizers[0].averaged().values())))
    assert averaged_weights({}) == {} and averaged_weights({"lstm_pipeline": {}}) == {}


def test_the_task_brings_the_averaging_so_a_bare_trainer_averages_too():
    """A LanguageModelTask fitted by a Trainer of one's own (a bench, a notebook) gets NT-ASGD's run side
    from the task itself (``configure_callbacks``), not only from ``train``'s callback list."""
    from lstm_pipeline.training.module import LanguageModelTask
    from lstm_pipeline.training.run_callbacks import run_callbacks

    task = LanguageModelTask({"cell": {"name": "lstm"}, "embedding_dim": 4, "hidden_size": 8}, 11,
                             {"_target_": "lstm_pipeline.training.ntasgd.NTASGD", "lr": 0.1})
    assert [type(c) for c in task.configure_callbacks()] == [NTASGDAveraging]
    assert not any(isinstance(c, NTASGDAveraging) for c in run_callbacks({}))  # one source: never twice
