"""``lstm-pipeline <command> [hydra overrides]``.

Each command is a Hydra app over the configs shipped in the package (``pkg://lstm_pipeline.conf``),
so ``--help``, ``--cfg job``, ``-m`` (multirun) and every override work the Hydra way.
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

from .network import is_network_error, network_error_message, network_errors

# errors caused by the user's input or config; anything else is a bug and keeps its traceback
USER_ERRORS = (LookupError, ValueError, FileNotFoundError)

#: command -> (the function that runs it, imported when the command runs; its Hydra config is
#: conf/<command>.yaml), help line
COMMANDS = {
    "train": ("lstm_pipeline.training.train:train", "train a model; writes a run directory"),
    "generate": ("lstm_pipeline.generation.run:generate_cmd", "generate text from a run directory"),
    "evaluate": ("lstm_pipeline.evaluation:evaluate", "loss, perplexity and bpc of a run's model on its splits"),
    "export": ("lstm_pipeline.export:export_cmd",
               "export a run's model as a TorchScript/ONNX step module (state in, state out)"),
    "plot": ("lstm_pipeline.plot:plot_cmd", "PNG training curves of one or more runs (run=[a,b] overlays)"),
    "push": ("lstm_pipeline.hub:push_cmd", "upload a run's model directory to the Hugging Face Hub"),
    "serve": ("lstm_pipeline.serve.app:serve_cmd",
              "an OpenAI-compatible completions API with continuous batching, and a page to try the model"),
    "plugins": (None, "list registered components per group; --check imports each; new <name> scaffolds one"),
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


#: what Hydra and the data stage write into a run directory before training starts
_BEFORE_TRAINING = {".hydra", "train.log", "tokenizer.json"}


def _drop_unused_run_dir(cfg) -> None:
    """A new run that stopped on bad input before training would leave a run directory holding only
    Hydra's files: remove it (a resumed run's directory is never touched)."""
    try:
        run_dir = Path(str(cfg.run_dir))
        resumed = bool(cfg.get("ckpt_path"))
    except Exception:  # no run_dir in this config
        return
    if not resumed and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= _BEFORE_TRAINING:
        shutil.rmtree(run_dir, ignore_errors=True)


def _hydra_app(config_name: str, fn):
    import hydra

    from .config import register_schemas

    register_schemas()

    @hydra.main(version_base="1.3", config_path="pkg://lstm_pipeline.conf", config_name=config_name)
    def app(cfg):
        try:
            return fn(cfg)
        except BrokenPipeError:  # the reader went away (`lstm-pipeline generate ... | head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that flushing stdout at exit does not fail again
            sys.exit(0)
        except Exception as exc:
            # a connection failure (the Hub, a download) is the user's to fix too: it says what could not
            # be reached and how to work offline; a user error that wraps one already says what to do
            if is_network_error(exc) or (not isinstance(exc, USER_ERRORS) and network_errors(exc)):
                message = network_error_message(exc)
            elif isinstance(exc, USER_ERRORS):
                message = str(exc)
            else:
                raise
            if config_name == "train":
                _drop_unused_run_dir(cfg)
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            # bad input: the message says what is wrong and what to do; no traceback
            print(f"lstm-pipeline {config_name}: error: {message}\n(Set HYDRA_FULL_ERROR=1 for the traceback.)",
                  file=sys.stderr)
            sys.exit(1)

    return app


def _resume_overrides(args: list[str]) -> list[str]:
    """``train ckpt_path=<run>``: compose the original run's config again (its recorded overrides
    first, yours after) and write into the same run directory."""
    ckpt = next((a.split("=", 1)[1] for a in args if a.startswith("ckpt_path=")), None)
    if not ckpt or ckpt in ("null", "None"):
        return args
    from omegaconf import OmegaConf

    from .training.train import resolve_checkpoint, run_dir_of_checkpoint

    run_dir = run_dir_of_checkpoint(resolve_checkpoint(ckpt)).resolve()
    recorded = run_dir / ".hydra" / "overrides.yaml"
    previous = [o for o in OmegaConf.load(recorded) if not o.startswith(("ckpt_path=", "hydra.run.dir="))] \
        if recorded.is_file() else []
    given_keys = {a.split("=", 1)[0].lstrip("+~") for a in args}
    previous = [o for o in previous if o.split("=", 1)[0].lstrip("+~") not in given_keys]
    extra = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={run_dir}"]
    return previous + args + extra


#: keys whose values are free text: quoted for Hydra so that any character (spaces, accents,
#: brackets, '=') reaches the program as typed, e.g. prompt="Où est-il ? [enter]"
FREE_TEXT_KEYS = ("prompt", "sample.prompt")


def _escape_quoted(value: str) -> str:
    """Hydra quoted-string escaping: backslashes before a quote (or at the end) are doubled,
    quotes are escaped; other backslashes stay as typed."""
    import re

    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return value.replace("'", "\\'")


def _quote_free_text(args: list[str]) -> list[str]:
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        if sep and key in FREE_TEXT_KEYS and not (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
            value = "'" + _escape_quoted(value) + "'"
        out.append(f"{key}{sep}{value}" if sep else a)
    return out


def _check_component_choices(args: list[str]) -> None:
    """``model/cell=<x>`` (and data=, tokenizer=, decoding=) where no config file ``<x>.yaml`` is
    installed: fail with the registry's message (unknown cell, available: ...) instead of Hydra's
    missing-file error, or say how to select a component that is registered but ships no file."""
    from .registry import CELLS, DATA_SOURCES, DECODERS, TOKENIZERS, UnknownComponentError, config_options

    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        reg = next((r for r in (CELLS, DATA_SOURCES, TOKENIZERS, DECODERS) if r.config_group == key), None)
        if not sep or reg is None or not value or value == "null":
            continue
        options = config_options(key)
        if value in options:
            continue
        field = key.replace("/", ".")
        if value in reg:
            raise UnknownComponentError(
                f"{reg.kind} '{value}' is installed ({reg.entries()[value].distribution}) but ships no config file "
                f"{key}/{value}.yaml: select it with {field}.name={value}. Config files in {key}: {', '.join(options)}.")
        try:
            reg.entry(value)  # raises: unknown <kind> '<value>'. Available ...: ...
        except UnknownComponentError as exc:
            raise UnknownComponentError(f"{exc} Config files in {key}: {', '.join(options)}.") from None


PLUGINS_USAGE = """usage: lstm-pipeline plugins [--check]
       lstm-pipeline plugins new <name> --group <group> [--dir D]

Lists the components registered in each entry-point group and the distribution that provides
each. Listing imports nothing; --check imports every component and reports, per entry, its plugin
API version or the error it fails with (exit status 1 if any fails)."""


def _plugins(args: list[str]) -> int:
    from .registry import ALL, API_VERSION, RegistryError, check_entry

    if args and args[0] == "new":
        from .scaffold import main as scaffold_main  # issue-7 scaffold

        return scaffold_main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(PLUGINS_USAGE)
        return 0
    unknown = [a for a in args if a != "--check"]
    if unknown:
        print(f"lstm-pipeline plugins: unknown argument '{unknown[0]}'.\n{PLUGINS_USAGE}", file=sys.stderr)
        return 2
    check = "--check" in args
    status = 0
    if check:
        print(f"plugin API provided: {API_VERSION}")
    for reg in ALL:
        print(f"{reg.group}" + (f"   (select with {reg.select})" if reg.select else ""))
        try:
            entries = reg.entries()
        except RegistryError as exc:
            print(f"  ERROR: {exc}")
            status = 1
            continue
        for name, e in entries.items():
            line = f"  {name:<22} {e.distribution:<28} {e.value}"
            if check:
                st = check_entry(reg, e)
                if st.ok:
                    line += f"   ok (API {st.api})" if st.api else "   ok (API not declared: taken as current)"
                else:
                    line += f"\n    FAILED: {st.error}"
                    status = 1
            print(line)
        if not entries:
            print("  (none)")
    return status


def main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(commands="\n".join(f"  {k:<10} {v[1]}" for k, v in COMMANDS.items())))
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS and "LOCAL_RANK" in os.environ and os.environ.get("LSTM_PIPELINE_COMMAND"):
        # a DDP worker that Lightning re-executed from the launcher's command line (overrides only)
        command, rest = os.environ["LSTM_PIPELINE_COMMAND"], argv
    if command not in COMMANDS:
        print(f"lstm-pipeline: unknown command '{command}'. Commands: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if command == "plugins":
        return _plugins(rest)
    rest = _quote_free_text(rest)
    try:
        _check_component_choices(rest)
    except LookupError as exc:
        print(f"lstm-pipeline {command}: error: {exc}", file=sys.stderr)
        return 1
    if command == "train":
        rest = _resume_overrides(rest)
    module, name = COMMANDS[command][0].split(":")

    def fn(cfg):  # the command's module is imported only once Hydra runs it (not for --help)
        return getattr(importlib.import_module(module), name)(cfg)

    # argv[0] stays the real program, so that Lightning's DDP launcher can re-execute it; the command
    # reaches the re-executed workers through the environment
    os.environ["LSTM_PIPELINE_COMMAND"] = command
    sys.argv = [sys.argv[0], *rest]
    _hydra_app(command, fn)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
