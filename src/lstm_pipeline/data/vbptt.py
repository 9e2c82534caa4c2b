"""Learning-rate scaling for variable-length BPTT (AWD-LSTM): a window of ``seq_len`` tokens
is trained with ``lr * seq_len / bptt``, so that short windows do not get the step size of full
ones. The base learning rate (what schedulers and ``LearningRateMonitor`` see) is restored right
after the optimiser step."""
from __future__ import annotations

import lightning as L


class VariableBPTTScaler(L.Callback):
    lstm_pipeline_api = "1"

    def __init__(self, bptt: int):
        self.bptt = bptt

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        seq_len = batch[0].size(1)  # (B, T)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["_base_lr"] = group["lr"]
                group["lr"] = group["lr"] * seq_len / self.bptt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                if "_base_lr" in group:
                    group["lr"] = group.pop("_base_lr")
