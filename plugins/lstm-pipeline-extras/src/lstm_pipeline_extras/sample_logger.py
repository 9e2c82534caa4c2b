"""A Lightning callback that generates a sample every N training steps and logs it: appended to
``<run dir>/samples.txt`` and, where the logger can hold text (TensorBoard), to the logger.

It samples from the model being trained with the run's tokenizer (``<run dir>/tokenizer.json``,
written before training starts), from a fresh state, with a fixed seed so that samples at
different steps are comparable. Only rank 0 samples.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class SampleLogger(L.Callback):
    lstm_pipeline_api = "1"

    def __init__(self, every_n_steps: int = 500, prompt: str = "", max_new_tokens: int = 200,
                 temperature: float = 0.8, file: str = "samples.txt", seed: int = 0):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.*.every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps    # sample after every N optimiser steps
        self.prompt = prompt                  # text the sample continues ("" = start of text)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.file = file                      # relative to the run directory
        self.seed = seed
        self._tokenizer = None
        self._last_step = 0  # the optimiser step last sampled

    def _tokenizer_of(self, trainer):
        if self._tokenizer is None:
            from lstm_pipeline.tokenization.base import TextTokenizer

            self._tokenizer = TextTokenizer.load(Path(trainer.default_root_dir) / "tokenizer.json")
        return self._tokenizer

    def sample(self, trainer, pl_module) -> str:
        from lstm_pipeline.generation.strategies import Sample
        from lstm_pipeline.training.train import bos_token_id

        tok = self._tokenizer_of(trainer)
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            ids = tok.encode_checked(self.prompt, on_unknown="skip") if self.prompt else []
            gen = torch.Generator(device=next(model.parameters()).device).manual_seed(self.seed)
            res = Sample(temperature=self.temperature).generate(
                model, [ids], max_new_tokens=self.max_new_tokens, bos_token_id=bos_token_id(tok), generator=gen)
        finally:
            model.train(was_training)
        return self.prompt + tok.decode(res.sequences[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        # with gradient accumulation several batches end on the same optimiser step: sample it once
        if step == self._last_step or step % self.every_n_steps or not trainer.is_global_zero:
            return
        self._last_step = step
        text = self.sample(trainer, pl_module)
        path = Path(trainer.default_root_dir) / self.file
        with path.open("a", encoding="utf-8") as f:
            f.write(f"=== step {step} ===\n{text}\n\n")
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_text"):  # TensorBoard
                experiment.add_text("sample", text, step)
