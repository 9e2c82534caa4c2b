"""``lstm-pipeline <command> [hydra overrides]``.

Each command is a Hydra app over the configs shipped in the package (``pkg://lstm_pipeline.conf``),
so ``--help``, ``--cfg job``, ``-m`` (multirun) and every override work the Hydra way.
"""
from __future__ import annotations

import glob
import importlib
import logging
import os
import shutil
import sys
from pathlib import Path

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


#: what Hydra and the data stage write into a run directory before training starts
_BEFORE_TRAINING = {".hydra", "train.log", "tokenizer.json", ".lock", "components.json"}


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
    import warnings

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


#: keys holding file paths that are read, resolved against the directory the command was started in
#: when ``hydra.job.chdir=true`` moved the process into the run directory
PATH_KEYS = ("data.path", "data.files", "data.train", "data.validation", "data.test", "tokenizer.path",
             "ckpt_path", "prompts_file", "output_file", "report", "out")
WRITTEN_KEYS = ("output_file", "report", "out")


def _absolute_paths(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd
    from omegaconf import ListConfig, OmegaConf, open_dict

    try:
        if not HydraConfig.get().job.chdir:
            return
    except ValueError:
        return
    base = Path(get_original_cwd())

    def fix(key, value):
        if not isinstance(value, str) or not value or "://" in value or os.path.isabs(os.path.expanduser(value)):
            return value
        local = base / value
        # a read path that is not here may be a Hub dataset/repo id (data.path=wikitext): left as given
        if key in WRITTEN_KEYS or local.exists() or glob.glob(str(local)):
            return str(local)
        return value

    with open_dict(cfg):
        for key in PATH_KEYS:
            try:
                value = OmegaConf.select(cfg, key)
            except Exception:
                continue
            if isinstance(value, (list, ListConfig)):
                OmegaConf.update(cfg, key, [fix(key, v) for v in value], merge=False)
            elif isinstance(value, str):
                OmegaConf.update(cfg, key, fix(key, value), merge=False)


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


def _hydra_app(config_name: str, fn):
    import hydra

    from .config.checks import check
    from .config.schema import register_schemas

    register_schemas(config_name)

    @hydra.main(version_base="1.3", config_path="pkg://lstm_pipeline.conf", config_name=config_name)
    def app(cfg):
        _setup_logging(config_name)
        try:
            _absolute_paths(cfg)
            check(config_name, cfg)
            result = fn(cfg)
            if config_name == "train":
                return _optimized_metric(cfg, result)
            return result
        except BrokenPipeError:  # the reader went away (`lstm-pipeline generate ... | head`): stop quietly
            sys.exit(_closed_pipe())
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

    from .training.safety import check_recorded_overrides
    from .config.checks import check_ckpt_path

    check_ckpt_path(ckpt)
    from .training.train import resolve_checkpoint, run_dir_of_checkpoint

    run_dir = run_dir_of_checkpoint(resolve_checkpoint(ckpt)).resolve()
    recorded = run_dir / ".hydra" / "overrides.yaml"
    previous = [o for o in OmegaConf.load(recorded) if not str(o).startswith(("ckpt_path=", "hydra.run.dir="))] \
        if recorded.is_file() else []
    check_recorded_overrides(previous, recorded)  # recorded configs are data: no code is replayed
    given_keys = {a.split("=", 1)[0].lstrip("+~") for a in args}
    previous = [o for o in previous if o.split("=", 1)[0].lstrip("+~") not in given_keys]
    extra = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={run_dir}"]
    return previous + args + extra


#: keys whose values are free text: quoted for Hydra so that any character (spaces, accents,
#: brackets, '=') reaches the program as typed, e.g. prompt="Où est-il ? [enter]"
FREE_TEXT_KEYS = ("prompt", "sample.prompt", "checkpoint.filename")


def _escape_quoted(value: str) -> str:
    """Hydra quoted-string escaping: backslashes before a quote (or at the end) are doubled,
    quotes are escaped; other backslashes stay as typed."""
    import re

    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return value.replace("'", "\\'")


#: keys whose values are tokens or short texts that are quoted for Hydra only where its grammar cannot
#: read them as typed (eos_token=<eos>), so that null and none keep their meaning
TOKEN_KEYS = ("eos_token", "data.eos_token", "data.document_separator", "tokenizer.unk_token",
              "generation.prompt")
#: list-valued keys whose items are such texts: stop_strings=[<eos>,"\n"] quotes the items it must
TOKEN_LIST_KEYS = ("stop_strings", "tokenizer.special_tokens")


def _quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""


def _parses(arg: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        OverridesParser.create().parse_override(arg)
        return True
    except HydraException:  # OverrideParseException, or the lexer's "token recognition error"
        return False


def _split_items(inner: str) -> list[str]:
    """The items of a list's inside, split at commas outside quotes."""
    items, cur, quote = [], "", None
    for ch in inner:
        if quote:
            quote = None if ch == quote and not cur.endswith("\\") else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            items.append(cur)
            cur = ""
            continue
        cur += ch
    return items + [cur] if cur or items else items


def _quote_free_text(args: list[str]) -> list[str]:
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        bare = key.lstrip("+")
        if sep and bare in FREE_TEXT_KEYS and not _quoted(value):
            value = "'" + _escape_quoted(value) + "'"
        elif sep and bare in TOKEN_KEYS and not _quoted(value) and not _parses(a):
            value = "'" + _escape_quoted(value) + "'"
        elif sep and bare in TOKEN_LIST_KEYS and value.startswith("[") and value.endswith("]") and not _parses(a):
            items = [i.strip() for i in _split_items(value[1:-1])]
            value = "[" + ",".join(i if _quoted(i) else "'" + _escape_quoted(i) + "'" for i in items) + "]"
        out.append(f"{key}{sep}{value}" if sep else a)
    return out


def _check_overrides_parse(args: list[str]) -> None:
    """An override Hydra's grammar cannot read (``key=<a b>``): one line naming it and how to quote,
    instead of Hydra's LexerNoViableAltException and its grammar link."""
    for a in args:
        if a.startswith("-") or "=" not in a or _parses(a):
            continue
        key, _, value = a.partition("=")
        raise ValueError(f"{a}: Hydra cannot read this value as typed. Quote it for Hydra inside shell quotes: "
                         f"\"{key}='{_escape_quoted(value)}'\" (characters such as < > [ ] , = and spaces need it).")


#: groups with a ``none`` option: ``group=null`` means it (Hydra refuses null for a group that a preset,
#: such as the default recipe conf/experiment/default.yaml, overrides in its defaults list)
_NONE_OPTIONS = ("scheduler", "callbacks", "experiment")


def _null_groups(args: list[str]) -> list[str]:
    """``scheduler=null`` -> ``scheduler=none`` (see :data:`_NONE_OPTIONS`)."""
    return [f"{a.partition('=')[0]}=none" if a.partition("=")[0] in _NONE_OPTIONS
            and a.partition("=")[2] in ("null", "~") else a for a in args]


def _trainer_overrides(args: list[str]) -> list[str]:
    """``trainer.X=v`` for any ``lightning.Trainer`` argument X, whether or not the trainer file sets
    it: passed to Hydra as ``++trainer.X=v`` (add or override). Names that are not Trainer arguments
    are left alone, so Hydra and the validation still reject them by name."""
    if not any(a.startswith(("trainer.", "+trainer.")) for a in args):
        return args
    import inspect

    import lightning as L

    params = set(inspect.signature(L.Trainer).parameters)
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        bare = key.lstrip("+")
        if sep and bare.startswith("trainer.") and bare.count(".") == 1 and bare.split(".")[1] in params:
            a = f"++{bare}={value}"
        out.append(a)
    return out


def _data_overrides(command: str, args: list[str]) -> list[str]:
    """``data.X=v`` for any setting X of the data source, whether or not the chosen ``data=<preset>``
    file lists it (``data=text`` lists only ``path``): passed to Hydra as ``++data.X=v`` (add or
    override), so every ``data.*`` setting a message advises (``data.encoding_errors=replace``) works
    as printed. A name the source does not take is still an error naming it (the validation's "Did
    you mean"). evaluate has no data node unless ``data=<preset>`` is given: left alone there."""
    if command not in ("train", "evaluate"):
        return args
    if command == "evaluate" and not any(a.partition("=")[0].lstrip("+") == "data" for a in args):
        return args
    out = []
    for a in args:
        key, sep, value = a.partition("=")
        bare = key.lstrip("+")
        if sep and bare.startswith("data.") and bare.count(".") == 1 and not key.startswith("~"):
            a = f"++{bare}={value}"
        out.append(a)
    return out


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


def _check_component_choices(args: list[str]) -> None:
    """``model/cell=<x>`` (and data=, tokenizer=, decoding=) where no config file ``<x>.yaml`` is
    installed: fail with the registry's message (unknown cell, available: ...) instead of Hydra's
    missing-file error, or say how to select a component that is registered but ships no file."""
    from .registry import (
        CELLS,
        DATA_SOURCES,
        DECODERS,
        TOKENIZERS,
        UnknownComponentError,
        config_options,
    )

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


def _check_recorded_components(command: str, args: list[str]) -> None:
    """A command that uses a run (``run=<dir>``, ``ckpt_path=<dir or .ckpt>``): the components the
    run recorded (``components.json``) that the command loads must still be installed (train and
    evaluate: all; generate, export, push: the cell); else one error naming the distribution to
    install. The records also make any later unknown-component error say so."""
    from .registry import (
        UnknownComponentError,
        expect_components,
        missing_components,
        read_provenance,
    )

    for arg in args:
        key, sep, value = arg.partition("=")
        if key not in ("run", "ckpt_path") or not sep or value in ("", "null", "None"):
            continue
        value = value.strip("'\"")
        records = read_provenance(value)
        if not records:
            continue
        expect_components(records, source=f"The run {value}")
        if command not in ("train", "evaluate"):  # generate, export, push: only the model's cell is loaded
            records = {k: v for k, v in records.items() if k == "model.cell"}
        missing = missing_components(records, source=f"The run {value}")
        if missing:
            raise UnknownComponentError(" ".join(missing))


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
            from .commands.plugins import run as plugins_run

            return plugins_run(rest)
        except BrokenPipeError:  # `lstm-pipeline plugins | head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    rest = _data_overrides(command, _quote_free_text(rest))
    # `train x=1 -m y=2,3`: Hydra's parser takes flags only before the overrides
    rest = [a for a in rest if a in ("-m", "--multirun")] + [a for a in rest if a not in ("-m", "--multirun")]
    try:
        _check_overrides_parse(rest)
        _check_recorded_components(command, rest)
        _check_component_choices(rest)
        if command == "train":
            # ckpt_path missing, or not a checkpoint, or a refused overrides.yaml: before any directory is made
            rest = _null_groups(_resume_overrides(_trainer_overrides(_null_groups(rest))))
            _check_component_choices(rest)  # the resumed run's own choices (model/cell=<plugin>) too
    except USER_ERRORS as exc:
        print(f"lstm-pipeline {command}: error: {exc}", file=sys.stderr)
        return 1
    if command == "train":
        try:
            from .training.rundir import claim_run_dir

            rest = claim_run_dir(rest)  # a run directory of its own, one writer (rest: resumed overrides included)
        except USER_ERRORS as exc:
            print(f"lstm-pipeline train: error: {exc}", file=sys.stderr)
            return 1
    def fn(cfg):  # the command's module is imported only once Hydra runs it (not for --help)
        return importlib.import_module(f"lstm_pipeline.commands.{command}").run(cfg)

    # argv[0] stays the real program, so that Lightning's DDP launcher can re-execute it; the command
    # reaches the re-executed workers through the environment
    os.environ["LSTM_PIPELINE_COMMAND"] = command
    sys.argv = [sys.argv[0], *rest]
    _hydra_app(command, fn)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
