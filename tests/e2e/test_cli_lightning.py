"""Lightning's and Hydra's own habits on the command line (issue 13): any Trainer argument as
``trainer.X=``, Lightning's info lines in the console and train.log without the noise, the checkpoint
policy, early stopping, validation at the last step, sweepers, shell completion, hydra.job.chdir."""
import json
import os
import textwrap

from helpers import ROOT, run_cli

SMALL = ["data=text", "model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=2", "batching.bptt=8",
         "batching.eval_batch_size=2", "sample.max_new_tokens=0", "trainer.log_every_n_steps=1"]


def test_any_trainer_argument_without_plus_and_lightning_lines_without_noise(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    # none of these is in conf/trainer/cpu.yaml; the run is shorter than val_check_interval
    proc = run_cli("train", *SMALL, f"data.path={tiny_corpus}", "trainer.max_steps=5", "trainer.accumulate_grad_batches=2",
                   "trainer.limit_val_batches=3", "trainer.deterministic=true", "trainer.val_check_interval=200",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    log = (run / "train.log").read_text()
    # validated once at the end: a best checkpoint and metrics in the model card, and the reason said
    assert "validating at the last step (5)" in log
    assert "`Trainer.fit` stopped: `max_steps=5` reached." in log  # Lightning's own info line reaches train.log
    assert out.count("`Trainer.fit` stopped") == 1, out  # once on the console, not twice
    assert list((run / "checkpoints").glob("best-step=5.ckpt"))
    assert json.loads((run / "model" / "config.json").read_text())["metrics"].get("val_loss") is not None
    for noise in ("GPU available", "TPU available", "LeafSpec", "IterableDataset` has `__len__`", "Tip:"):
        assert noise not in out, noise
    assert "Epoch 0/-2" not in out and "Epoch 0 " in out  # the bar's title for a step-bounded run


def test_checkpoint_policy_off_and_every_n_steps(tiny_corpus, tmp_path, cli_in_process):
    off = tmp_path / "off"
    cli_in_process("train", *SMALL, f"data.path={tiny_corpus}", "trainer.max_steps=4", "+trainer.enable_checkpointing=false",
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={off}", cwd=tmp_path)
    assert not (off / "checkpoints").exists() and (off / "model" / "model.safetensors").is_file()

    snap = tmp_path / "snap"
    cli_in_process("train", *SMALL, f"data.path={tiny_corpus}", "trainer.max_steps=6", "trainer.val_check_interval=3",
                   "checkpoint.every_n_train_steps=2", "checkpoint.save_top_k=-1", "checkpoint.monitor=null",
                   "checkpoint.filename=step-{step}", "trainer.enable_progress_bar=false", f"hydra.run.dir={snap}", cwd=tmp_path)
    names = {p.name for p in (snap / "checkpoints").iterdir()}
    assert {"step-step=2.ckpt", "step-step=4.ckpt", "step-step=6.ckpt", "last.ckpt"} <= names, names


def test_early_stopping_says_why(tiny_corpus, tmp_path, cli_in_process):
    run = tmp_path / "run"
    cli_in_process("train", *SMALL, f"data.path={tiny_corpus}", "trainer.max_steps=200", "trainer.val_check_interval=2",
                   "callbacks=early_stopping", "callbacks.early_stopping.patience=0", "callbacks.early_stopping.min_delta=1.0",
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={run}", cwd=tmp_path)
    log = (run / "train.log").read_text()
    assert "Signaling Trainer to stop" in log, log
    assert "lr-Adam" in (run / "logs" / "metrics.csv").read_text()  # the default callbacks are kept


def test_sweeper_gets_the_optimized_metric_as_a_float(tiny_corpus, tmp_path):
    """Optuna/Ax/Nevergrad need a float from each trial: a Hydra callback records what the basic
    sweeper got back from each job."""
    (tmp_path / "record_return.py").write_text(textwrap.dedent("""
        import json
        from hydra.experimental.callback import Callback

        class Record(Callback):
            def on_job_end(self, config, job_return, **kw):
                with open(config.hydra.runtime.cwd + "/returns.jsonl", "a") as f:
                    f.write(json.dumps(repr(job_return.return_value)) + "\\n")
    """))
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run_cli("train", "-m", *SMALL, f"data.path={tiny_corpus}", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
            "optimized_metric=best_val_loss", "model.hidden_size=8,16", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "+hydra.callbacks.record._target_=record_return.Record", cwd=tmp_path, env=env)
    returns = [json.loads(line) for line in (tmp_path / "returns.jsonl").read_text().splitlines()]
    assert len(returns) == 2
    assert all(isinstance(eval(r), float) for r in returns), returns


def test_shell_completion(tmp_path, cli_in_process):
    env = {"COMP_LINE": "lstm-pipeline tr"}
    assert cli_in_process("-sc", "query=bash", env=env, cwd=tmp_path).stdout.split() == ["train"]
    env = {"COMP_LINE": "lstm-pipeline train model.hidd"}
    assert "model.hidden_size=" in cli_in_process("-sc", "query=bash", env=env, cwd=tmp_path).stdout.split()
    env = {"COMP_LINE": "lstm-pipeline generate decoding=nu"}
    assert "decoding=nucleus" in cli_in_process("-sc", "query=bash", env=env, cwd=tmp_path).stdout.split()
    assert "complete -o nospace" in cli_in_process("train", "-sc", "install=bash", cwd=tmp_path).stdout


def test_chdir_keeps_relative_data_paths(tiny_corpus, tmp_path, cli_in_process):
    (tmp_path / "corpus.txt").write_text(tiny_corpus.read_text())
    cli_in_process("train", *SMALL, "data.path=corpus.txt", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                   "hydra.job.chdir=true", "hydra.run.dir=out/run", cwd=tmp_path)
    assert (tmp_path / "out" / "run" / "model" / "model.safetensors").is_file()


def test_help_of_each_command_names_it_and_lists_only_its_own_choices(tmp_path, cli_in_process):
    for command in ("generate", "evaluate", "export", "plot", "push"):
        out = cli_in_process(command, "--help", cwd=tmp_path).stdout
        assert out.startswith(f"lstm-pipeline {command} ") and "powered by Hydra" not in out, out[:300]
        assert "trainer: cpu" not in out and "model/cell:" not in out  # train's groups
    out = cli_in_process("train", "--help", cwd=tmp_path).stdout
    assert out.startswith("lstm-pipeline train ") and "trainer: cpu, ddp, gpu" in out


def test_ddp_start_up_is_said_once_on_the_console_and_in_train_log(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", *SMALL, f"data.path={tiny_corpus}", "trainer.max_steps=3", "trainer=ddp",
                   "trainer.accelerator=cpu", "trainer.devices=2", "trainer.enable_progress_bar=false",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in (run / "train.log").read_text()
    assert "All distributed processes registered. Starting with 2 processes" in out
    assert out.count("GLOBAL_RANK: 1, MEMBER: 2/2") == 1 and "INFO: " not in out  # no second copy through Lightning's handler
    assert out.count("validating at the last step") == 1  # rank 0 only
    assert "is deprecated" not in out and "sync_dist" not in out


def test_resumed_run_prints_no_banner_advert_or_resumability_warning(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # stopped mid-epoch at step 12
    proc = run_cli("train", f"ckpt_path={run}", "trainer.max_steps=14", "trainer.enable_progress_bar=false", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    for noise in ("GPU available", "Tip:", "not resumable", "LeafSpec"):
        assert noise not in out, noise
    assert "`Trainer.fit` stopped: `max_steps=14` reached." in (run / "train.log").read_text()


def test_the_bar_counts_to_max_steps_after_a_resume(tiny_corpus, tmp_path, cli_in_process):
    """The train bar shows the batch's place in the epoch over the epoch's batches to run: after a
    resume from step 6 to 10 it read '10/4' (Lightning's total is the steps left), now '10/10'."""
    import re

    run = tmp_path / "run"
    common = [*SMALL, f"data.path={tiny_corpus}", "trainer.val_check_interval=3"]
    cli_in_process("train", *common, "trainer.max_steps=6", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}",
                   cwd=tmp_path)
    for steps in (10, 13):  # resumed at a validation step (6), then off one (10)
        out = cli_in_process("train", f"ckpt_path={run}", f"trainer.max_steps={steps}", "trainer.enable_progress_bar=true",
                             cwd=tmp_path).stdout
        counts = re.findall(r"Epoch 0\b.*?(\d+)/(\d+)", out)
        assert counts, out[-2000:]
        assert counts[-1] == (str(steps), str(steps)), counts[-3:]


def test_optuna_sweeper_optimises_the_metric_train_returns(tiny_corpus, tmp_path):
    """`-m hydra/sweeper=optuna` with two tiny trials: each trial returns optimized_metric as a float
    (was: every trial failed "must be float-castable"), and the study reports the best of them."""
    import pytest
    import yaml

    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                        reason="hydra-optuna-sweeper is not installed (pip install hydra-optuna-sweeper; in the dev extra)")
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=3",
                   "optimized_metric=best_val_loss", *[a for a in SMALL if not a.startswith("model.hidden_size")],
                   "model.hidden_size=choice(8,16)",
                   f"data.path={tiny_corpus}", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(trials) == 2
    losses = [json.loads((t / "model" / "config.json").read_text())["metrics"]["val_loss"] for t in trials]
    assert isinstance(result["best_value"], float)
    assert abs(result["best_value"] - min(losses)) < 1e-6, (result, losses)
    assert result["best_params"]["model.hidden_size"] in (8, 16)
    assert "Best value: " in proc.stdout + proc.stderr
