"""``lstm-pipeline <command> [hydra overrides]``.

Each command is a Hydra app over the configs shipped in the package (``pkg://lstm_pipeline.conf``),
so ``--help``, ``--cfg job``, ``-m`` (multirun) and every override work the Hydra way.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

import hydra

from .config.checks import check
from .config.overrides import absolute_paths, compose_and_check, prepare
from .config.schema import register_schemas
from .network import is_network_error, network_error_message, network_errors

# errors caused by the user's input or config; anything else is a bug and keeps its traceback
USER_ERRORS = (LookupError, ValueError, FileNotFoundError)

#: command -> help line. ``lstm_pipeline.commands.<command>.run`` runs it (imported when the command
#: runs); its Hydra config is ``conf/<command>.yaml`` (``plugins`` takes plain arguments, no Hydra)
COMMANDS = {
    "train": "train a model; writes a run directory",
    "generate": "generate text from a run directory",
    "evaluate": "loss, perplexity and bpc of a run's model on its splits",
    "export": "export a run's model as a TorchScript/ONNX step module (state in, state out)",
    "plot": "PNG training curves of one or more runs (run=[a,b] overlays)",
    "push": "upload a run's model directory to the Hugging Face Hub",
    "serve": "an OpenAI-compatible completions API with continuous batching, and a page to try the model",
    "plugins": "list registered components per group; --check imports each; new <name> scaffolds one",
}

USAGE = """usage: lstm-pipeline <command> [overrides ...]

commands:
{commands}

Examples:
  lstm-pipeline train                                   # default run on the bundled Shakespeare
  lstm-pipeline train model/cell=gru trainer.max_steps=500
  lstm-pipeline generate run=runs/<date>/<time> prompt="ROMEO:" max_new_tokens=300
  lstm-pipeline evaluate run=runs/<date>/<time>
  lstm-pipeline export run=runs/<date>/<time> format=onnx quantize=true
  lstm-pipeline serve run=runs/<date>/<time> port=8000           # http://127.0.0.1:8000/
  lstm-pipeline train --help                            # config groups and the composed config
Set HYDRA_FULL_ERROR=1 for a full traceback."""


#: Lightning's lines that say nothing about this run (hardware it does not use, an advert)
_NOISE = ("GPU available:", "TPU available:", "HPU available:", "\U0001f4a1 Tip:", "💡")
#: warnings every run printed that are not the user's to act on: (message regex, module regex)
_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",                 # torch/lightning internal deprecation
    r".*Your `IterableDataset` has `__len__` defined",    # our streams define it on purpose
    r".*does not have many workers",                      # num_workers=0 is the default, by design
    r".*It is recommended to use `self\.log\(.*sync_dist=True", # our metrics are reduced across ranks already
    r".*dataloader.* is not resumable",                   # the datamodule restores its own position
    r".*The number of training batches \(.*\) is smaller than the logging interval",
    r".*torch\.distributed\.nn\.functional\.all_gather is deprecated",  # inside Lightning's all_gather (DDP)
    r".*Precision bf16-mixed is not supported by the model summary",  # only its size estimate (trainer.precision=auto)
)


class _LightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("lightning") and str(record.msg).lstrip().startswith(_NOISE))


def _setup_logging(command: str) -> None:
    """Lightning's info lines (why early stopping stopped, DDP start-up) go through Hydra's handlers,
    to the console and ``<run dir>/<command>.log``, once; its hardware banner, advert and the
    warnings listed in ``_WARNINGS`` are dropped."""
    if command == "train":
        import lightning  # noqa: F401  (its import adds the console handlers removed here)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):  # the console handlers Lightning adds when imported
            if type(h) is logging.StreamHandler:
                lg.removeHandler(h)
        lg.propagate = True
    for h in logging.getLogger().handlers:
        if not any(isinstance(f, _LightningNoise) for f in h.filters):
            h.addFilter(_LightningNoise())
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def _optimized_metric(cfg, result):
    """``optimized_metric=<name>``: return that metric as a float, as Hydra's sweepers (Optuna, Ax,
    Nevergrad, the basic one) need; else the dict of metrics."""
    name = cfg.get("optimized_metric")
    if not name or not isinstance(result, dict):
        return result
    if name not in result:
        raise ValueError(f"optimized_metric={name} is not among the run's metrics ({', '.join(sorted(result))}): "
                         f"pick one of them (best_val_loss needs a validation, see trainer.val_check_interval).")
    return float(result[name])


def _claim_run_dir(args: list[str]) -> list[str]:
    from .training.rundir import claim_run_dir  # lightning: imported by train only

    return claim_run_dir(args)  # a run directory of its own, one writer (a resume's overrides included)


def _drop_unused_run_dir(cfg) -> None:
    from .training.rundir import drop_unused_run_dir

    drop_unused_run_dir(cfg)


#: command -> (overrides -> overrides before Hydra runs, (cfg, result) -> what Hydra returns,
#: cfg -> cleanup after bad input); the commands without an entry need none of them
HOOKS = {"train": (_claim_run_dir, _optimized_metric, _drop_unused_run_dir)}
_NO_HOOKS = (lambda args: args, lambda cfg, result: result, lambda cfg: None)


def _user_message(exc: Exception) -> str | None:
    """The one line to print for an error that is the user's to fix (bad input, an unreachable
    network); None for a bug, which keeps its traceback."""
    # a user error that wraps a network failure already says what to do
    if is_network_error(exc) or (not isinstance(exc, USER_ERRORS) and network_errors(exc)):
        return network_error_message(exc)
    return str(exc) if isinstance(exc, USER_ERRORS) else None


def _fail(command: str, message: str) -> int:
    print(f"lstm-pipeline {command}: error: {message}", file=sys.stderr)
    return 1


def _hydra_app(config_name: str, fn, checked: bool = False):
    """The command as a Hydra app running ``fn(cfg)``; ``checked``: the config was checked before Hydra ran."""
    register_schemas(config_name)
    _, on_result, on_error = HOOKS.get(config_name, _NO_HOOKS)

    @hydra.main(version_base="1.3", config_path="pkg://lstm_pipeline.conf", config_name=config_name)
    def app(cfg):
        _setup_logging(config_name)
        try:
            absolute_paths(cfg)  # read paths from where the command started (hydra.job.chdir=true)
            if not checked:  # a sweep's job (-m), or a config only Hydra could compose
                check(config_name, cfg)
            return on_result(cfg, fn(cfg))
        except BrokenPipeError:  # the reader went away (`lstm-pipeline generate ... | head`): stop quietly
            sys.exit(_closed_pipe())
        except Exception as exc:
            message = _user_message(exc)
            if message is None:
                raise
            on_error(cfg)
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            sys.exit(_fail(config_name, f"{message}\n(Set HYDRA_FULL_ERROR=1 for the traceback.)"))

    return app


def _complete(argv: list[str]) -> int:
    """Hydra's shell completion (``eval "$(lstm-pipeline train -sc install=bash)"``) calls
    ``lstm-pipeline -sc query=<shell>`` with the line typed so far in COMP_LINE: complete the command
    name, or hand the line without it to that command's Hydra app."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    typing_command = len(words) < 2 or (len(words) == 2 and not line.endswith(" "))
    if typing_command:
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(c for c in COMMANDS if c.startswith(prefix)))
        return 0
    command = words[1]
    if command not in COMMANDS or command == "plugins":
        print("")
        return 0
    os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
    sys.argv = [sys.argv[0], *argv]
    _hydra_app(command, lambda cfg: None)()
    return 0


def _tolerant_stdio() -> None:
    """A console that cannot encode every character (PYTHONIOENCODING=cp1252, a legacy Windows code
    page): print '?' for what it cannot show and keep going, instead of stopping mid-text."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):  # a stream that cannot be reconfigured: leave it
                pass


def _closed_pipe() -> int:
    """The reader of our output went away (``lstm-pipeline plugins | head``): stop quietly; stdout
    goes to /dev/null so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int | None:
    """The ``lstm-pipeline`` command; returns the exit status."""
    _tolerant_stdio()
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        return _closed_pipe()


def _main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(commands="\n".join(f"  {k:<10} {v}" for k, v in COMMANDS.items())))
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion") and any(a.startswith("query=") for a in rest):
        return _complete(argv)
    if command not in COMMANDS and "LOCAL_RANK" in os.environ and os.environ.get("LSTM_PIPELINE_COMMAND"):
        # a DDP worker that Lightning re-executed from the launcher's command line (overrides only)
        command, rest = os.environ["LSTM_PIPELINE_COMMAND"], argv
    if command not in COMMANDS:
        print(f"lstm-pipeline: unknown command '{command}'. Commands: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if command == "plugins":
        try:
            return importlib.import_module(".commands.plugins", __package__).run(rest)
        except BrokenPipeError:  # `lstm-pipeline plugins | head`: stop quietly
            return _closed_pipe()
    before_hydra = HOOKS.get(command, _NO_HOOKS)[0]
    try:
        # a ckpt_path that is not a checkpoint, a refused overrides.yaml, a misspelt key: before any directory is made
        rest = prepare(command, rest)
        checked = compose_and_check(command, rest)  # the one check pass: every problem, no directory made
        rest = before_hydra(rest)
    except USER_ERRORS as exc:
        return _fail(command, str(exc))

    def fn(cfg):  # the command's module is imported only once Hydra runs it (not for --help)
        return importlib.import_module(f"lstm_pipeline.commands.{command}").run(cfg)

    # argv[0] stays the real program, so that Lightning's DDP launcher can re-execute it; the command
    # reaches the re-executed workers through the environment
    os.environ["LSTM_PIPELINE_COMMAND"] = command
    sys.argv = [sys.argv[0], *rest]
    _hydra_app(command, fn, checked)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
