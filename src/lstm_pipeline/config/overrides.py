"""What a user typed -> the overrides Hydra gets -> a composed config: the one way in.

``lstm-pipeline <command> <overrides>`` (:mod:`lstm_pipeline.cli`) and :func:`lstm_pipeline.api.train`
both go through :func:`prepare` (the typed overrides rewritten and checked) and :func:`compose` (the
config Hydra composes from them, a missing key reported with a "Did you mean"). Each rewrite is a
small pure function of the override list:

1. :func:`literal_text`: text a user types (the fields marked :data:`~lstm_pipeline.config.schema.TEXT`
   in the job schemas and the component settings in :data:`~lstm_pipeline.config.schema.TEXT_SETTINGS`:
   prompts, stop strings, special tokens, document separators) is quoted for Hydra and its ``${`` escaped,
   so any character reaches the program as typed and nothing in it is interpolated
   (``prompt='${oc.env:HOME}'`` is those 16 characters). A string setting whose value Hydra's grammar
   cannot read (``ckpt_path=<run>/checkpoints/best-step=45.ckpt``) is read as text too.
2. :func:`component_settings`: ``trainer.X=`` for any ``lightning.Trainer`` argument and ``data.X=``
   for any setting of the data source become ``++`` (add or override).
3. :func:`none_groups`: ``scheduler=null`` selects the group's ``none`` option.
4. :func:`resume_settings`: ``train ckpt_path=<run>`` replays the run's recorded overrides.

An override Hydra cannot parse, a component that is not installed, or a key the config does not have
raise a :class:`~lstm_pipeline.registry.ConfigError` (a ``ValueError``) with one line.
"""
from __future__ import annotations

import dataclasses
import difflib
import glob
import inspect
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from ..registry import (
    CELLS,
    DATA_SOURCES,
    DECODERS,
    TOKENIZERS,
    ConfigError,
    UnknownComponentError,
    config_options,
    expect_components,
    missing_components,
    read_provenance,
)
from . import schema
from .checks import check, check_ckpt_path

#: command -> its job schema (the dataclass its ``conf/<command>.yaml`` extends)
JOB_SCHEMAS = {"train": schema.TrainJob, "generate": schema.GenerateJob, "evaluate": schema.EvaluateJob,
               "export": schema.ExportJob, "plot": schema.PlotJob, "push": schema.PushJob, "serve": schema.ServeJob}
#: groups with a ``none`` option: ``group=null`` means it (Hydra refuses null for a group that a preset,
#: such as the default recipe conf/experiment/default.yaml, overrides in its defaults list)
NONE_OPTIONS = ("scheduler", "callbacks", "experiment")
NULL = ("null", "~")


# -- one override ----------------------------------------------------------------------------------
def split(arg: str) -> tuple[str, str, str]:
    """``'+model.x=3'`` -> ``('+', 'model.x', '3')``: the prefix (``+``, ``++``, ``~`` or ``''``), the
    key and the value as typed (``''`` when there is no ``=``)."""
    key, _, value = arg.partition("=")
    bare = key.lstrip("+~")
    return key[: len(key) - len(bare)], bare, value


def parses(arg: str) -> bool:
    """Whether Hydra's override grammar reads ``arg`` (``key=<a b>`` does not)."""
    try:
        OverridesParser.create().parse_override(arg)
        return True
    except HydraException:  # OverrideParseException, or the lexer's "token recognition error"
        return False


def value_of(arg: str) -> Any:
    """The value Hydra reads from ``arg`` (quotes removed: ``ckpt_path='a=b.ckpt'`` -> ``'a=b.ckpt'``);
    the text after ``=`` when Hydra's grammar cannot read it."""
    try:
        return OverridesParser.create().parse_override(arg).value()
    except HydraException:
        return arg.partition("=")[2]


def quoted(value: str) -> bool:
    """Whether ``value`` is one Hydra quoted string (``'...'`` or ``"..."``)."""
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""


def escape_quoted(value: str) -> str:
    """Hydra quoted-string escaping: backslashes before a quote (or at the end) are doubled, quotes
    are escaped; other backslashes stay as typed."""
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return value.replace("'", "\\'")


def no_interpolation(text: str) -> str:
    """``${`` -> ``\\${`` (OmegaConf's escape: the value reads back as the literal ``${``); an already
    escaped one is left as it is."""
    return re.sub(r"(?<!\\)\$\{", r"\\${", text)


def literal(value: str) -> str:
    """``value`` as a Hydra quoted string that reads back exactly as typed, never interpolated. A value
    the user quoted already keeps its quotes (only its ``${`` are escaped)."""
    if quoted(value):
        return value[0] + no_interpolation(value[1:-1]) + value[-1]
    return "'" + no_interpolation(escape_quoted(value)) + "'"


def list_items(inner: str) -> list[str]:
    """The items of a list's inside (``a,'b,c'`` -> ``['a', "'b,c'"]``), split at commas outside quotes."""
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


# -- what the schemas say about keys ------------------------------------------------------------------
def _schema_fields(cls, prefix: str = "") -> Iterable[tuple[str, dataclasses.Field]]:
    for f in dataclasses.fields(cls):
        nested = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(nested):
            yield from _schema_fields(type(nested), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def text_keys(command: str) -> dict[str, bool]:
    """The keys of ``command``'s job schema that hold text a user types (field metadata
    :data:`~lstm_pipeline.config.schema.TEXT`) -> whether ``null`` is a value of theirs (the default is None)."""
    cls = JOB_SCHEMAS.get(command)
    return {} if cls is None else {k: f.default is None for k, f in _schema_fields(cls) if f.metadata.get("text")}


def string_keys(command: str) -> set[str]:
    """The keys of ``command``'s job schema typed as a string (``str`` or ``Optional[str]``)."""
    cls = JOB_SCHEMAS.get(command)
    return set() if cls is None else {k for k, f in _schema_fields(cls) if "str" in str(f.type)}


# -- the rewrites -----------------------------------------------------------------------------------
def literal_text(command: str, args: list[str]) -> list[str]:
    """Text settings quoted so that their values reach the program as typed (see the module docstring);
    ``null`` keeps its meaning where the setting takes it. A string setting Hydra cannot read is text too."""
    texts, strings, out = text_keys(command), string_keys(command), []
    for a in args:
        prefix, key, value = split(a)
        component_text = "." in key and key.rsplit(".", 1)[1] in schema.TEXT_SETTINGS and not key.startswith("hydra.")
        if "=" not in a or prefix == "~" or not (key in texts or component_text or key in strings):
            out.append(a)
        elif value in NULL and texts.get(key, True):
            out.append(a)
        elif key not in texts and not component_text:  # a plain string setting: only what Hydra cannot read
            out.append(a if parses(a) else f"{prefix}{key}={literal(value)}")
        elif value.startswith("[") and value.endswith("]"):
            items = [literal(i.strip()) for i in list_items(value[1:-1])]
            out.append(f"{prefix}{key}=[{','.join(items)}]")
        else:
            out.append(f"{prefix}{key}={literal(value)}")
    return out


def none_groups(args: list[str]) -> list[str]:
    """``scheduler=null`` -> ``scheduler=none`` (see :data:`NONE_OPTIONS`)."""
    return [f"{a.partition('=')[0]}=none" if a.partition("=")[0] in NONE_OPTIONS
            and a.partition("=")[2] in NULL else a for a in args]


def _trainer_arguments() -> set[str]:
    import lightning as L  # heavy: only when a trainer.* override is given

    return set(inspect.signature(L.Trainer).parameters)


def component_settings(command: str, args: list[str]) -> list[str]:
    """``trainer.X=v`` for any ``lightning.Trainer`` argument X and ``data.X=v`` for any setting of the
    data source become ``++trainer.X=v`` / ``++data.X=v`` (add or override, whether or not the chosen
    file lists it), so every setting a message advises works as printed. A name that is not an
    argument is left alone and rejected by name later. evaluate has a data node only with ``data=<preset>``."""
    open_nodes = set()
    if command == "train" and any(split(a)[1].startswith("trainer.") for a in args):
        open_nodes.add("trainer")
    if command == "train" or (command == "evaluate" and any(split(a)[1] == "data" for a in args)):
        open_nodes.add("data")
    trainer_args = _trainer_arguments() if "trainer" in open_nodes else set()
    out = []
    for a in args:
        prefix, key, value = split(a)
        node, _, name = key.partition(".")
        if "=" in a and prefix != "~" and node in open_nodes and name and "." not in name \
                and (node == "data" or name in trainer_args):
            a = f"++{key}={value}"
        out.append(a)
    return out


def flags_first(args: list[str]) -> list[str]:
    """``train x=1 -m y=2,3``: Hydra's parser takes ``-m`` only before the overrides."""
    return [a for a in args if a in ("-m", "--multirun")] + [a for a in args if a not in ("-m", "--multirun")]


# -- checks on the typed overrides ---------------------------------------------------------------------
def check_parse(args: list[str]) -> None:
    """An override Hydra's grammar cannot read (``key=<a b>``): one line naming it and how to quote,
    instead of Hydra's LexerNoViableAltException and its grammar link."""
    for a in args:
        if a.startswith("-") or "=" not in a or parses(a):
            continue
        key, _, value = a.partition("=")
        raise ConfigError(f"{a}: Hydra cannot read this value as typed. Quote it for Hydra inside shell quotes: "
                          f"\"{key}='{escape_quoted(value)}'\" (characters such as < > [ ] , = and spaces need it).")


def check_component_choices(args: list[str]) -> None:
    """``model/cell=<x>`` (and data=, tokenizer=, decoding=) where no config file ``<x>.yaml`` is
    installed: the registry's message (unknown cell, available: ...) instead of Hydra's missing-file
    error, or how to select a component that is registered but ships no file.
    Raises :class:`~lstm_pipeline.registry.UnknownComponentError`."""
    for arg in args:
        _, key, value = split(arg)
        reg = next((r for r in (CELLS, DATA_SOURCES, TOKENIZERS, DECODERS) if r.config_group == key), None)
        if "=" not in arg or reg is None or not value or value == "null":
            continue
        options = config_options(key)
        if value in options:
            continue
        if value in reg:
            raise UnknownComponentError(
                f"{reg.kind} '{value}' is installed ({reg.entries()[value].distribution}) but ships no config file "
                f"{key}/{value}.yaml: select it with {key.replace('/', '.')}.name={value}. "
                f"Config files in {key}: {', '.join(options)}.")
        try:
            reg.entry(value)  # raises: unknown <kind> '<value>'. Available ...: ...
        except UnknownComponentError as exc:
            raise UnknownComponentError(f"{exc} Config files in {key}: {', '.join(options)}.") from None


def check_recorded_components(command: str, args: list[str]) -> None:
    """A command that uses a run (``run=<dir>``, ``ckpt_path=<dir or .ckpt>``): the components the run
    recorded (``components.json``) that the command loads must still be installed (train and evaluate:
    all; the others: the cell). Raises :class:`~lstm_pipeline.registry.UnknownComponentError` naming
    the distribution to install."""
    for arg in args:
        prefix, key, _ = split(arg)
        value = value_of(arg) if "=" in arg else None
        if prefix or key not in ("run", "ckpt_path") or not isinstance(value, str) or value in ("", "None"):
            continue
        records = read_provenance(value)
        if not records:
            continue
        expect_components(records, source=f"The run {value}")
        if command not in ("train", "evaluate"):  # generate, export, push, serve: only the model's cell is loaded
            records = {k: v for k, v in records.items() if k == "model.cell"}
        missing = missing_components(records, source=f"The run {value}")
        if missing:
            raise UnknownComponentError(" ".join(missing))


# -- resuming a run --------------------------------------------------------------------------------------
def resume_settings(args: list[str]) -> list[str]:
    """``train ckpt_path=<run dir or .ckpt>``: the run's recorded overrides first, the given ones after
    (a key given replaces the recorded one), and ``hydra.run.dir`` set to that run, so it continues in
    its own directory. Raises ``ConfigError`` for a ckpt_path that is no checkpoint or run directory."""
    from ..training.safety import check_recorded_overrides  # torch: loaded only to resume
    from ..training.train import resolve_checkpoint, run_dir_of_checkpoint  # lightning: loaded only to resume

    ckpt = next((value_of(a) for a in args if split(a)[:2] == ("", "ckpt_path") and "=" in a), None)
    if not ckpt or not isinstance(ckpt, str) or ckpt == "None":
        return args
    check_ckpt_path(ckpt)
    run_dir = run_dir_of_checkpoint(resolve_checkpoint(ckpt)).resolve()
    recorded = run_dir / ".hydra" / "overrides.yaml"
    previous = [str(o) for o in OmegaConf.load(recorded)] if recorded.is_file() else []
    previous = [o for o in previous if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    check_recorded_overrides(previous, recorded)  # recorded configs are data: no code is replayed
    given = {split(a)[1] for a in args}
    previous = [o for o in previous if split(o)[1] not in given]
    extra = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}"]
    return previous + args + extra


# -- the whole chain -----------------------------------------------------------------------------------
def _train_steps(args: list[str]) -> list[str]:
    """train: ``ckpt_path=`` replays the run's recorded overrides, whose component choices are checked too."""
    args = none_groups(resume_settings(none_groups(args)))
    check_component_choices(args)
    return args


#: command -> the steps only it takes, after the common ones
COMMAND_STEPS: dict[str, Callable[[list[str]], list[str]]] = {"train": _train_steps}


def prepare(command: str, args: Iterable[str]) -> list[str]:
    """The overrides Hydra gets for ``lstm-pipeline <command> <args>``: text kept literal, component
    settings opened, flags first, then checked (parse, installed components, a resumed run's).
    Raises ``ConfigError``/``UnknownComponentError`` (``ValueError``/``LookupError``) with one line."""
    args = flags_first(component_settings(command, literal_text(command, list(args))))
    check_parse(args)
    check_recorded_components(command, args)
    check_component_choices(args)
    return COMMAND_STEPS.get(command, list)(args)


def _compose(command: str, args: list[str], return_hydra_config: bool = False) -> DictConfig:
    schema.register_schemas(command)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
            return hydra_compose(command, overrides=args, return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


def _missing_key(exc: ConfigCompositionException) -> str | None:
    """The full key of an override that names a key the config does not have, else None."""
    cause = exc.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key and "not in" in str(cause):
        return str(cause.full_key)
    return None


def did_you_mean(command: str, args: list[str], full_key: str) -> str:
    """One line for an override of a key the config does not have: the closest of the node's keys
    (difflib) and all of them, worded as the component checks word it for ``+key=``."""
    parent, _, key = full_key.rpartition(".")
    try:
        cfg = _compose(command, [a for a in args if split(a)[1] != full_key])
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except (HydraException, ConfigKeyError, ConfigAttributeError):
        node = None
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    if parent == "trainer":  # trainer.X= takes any lightning.Trainer argument (component_settings)
        keys = sorted(_trainer_arguments())
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listed = f" Its settings are: {', '.join(keys)}." if keys else ""
    return f"{full_key}: {parent or command} does not take the setting '{key}'.{hint}{listed}"


def compose(command: str, args: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The config Hydra composes for ``command`` from ``args`` (overrides from :func:`prepare`), not
    resolved. An override of a key the config does not have raises ``ConfigError`` with a "Did you
    mean" (:func:`did_you_mean`); other composition errors are Hydra's ``ConfigCompositionException``."""
    try:
        cfg = _compose(command, args, return_hydra_config)
    except ConfigCompositionException as exc:
        missing = _missing_key(exc)
        if missing is None:
            raise
        raise ConfigError(did_you_mean(command, args, missing)) from None
    for key in _added_to_schema_nodes(cfg, args):
        raise ConfigError(did_you_mean(command, args, key))
    return cfg


def _added_to_schema_nodes(cfg: DictConfig, args: list[str]) -> list[str]:
    """The ``+key=`` overrides that added a key to a node typed by a job-schema dataclass (``batching``,
    ``sample``: Hydra's ``+`` adds it there unchecked), where no such field exists."""
    added = []
    for a in args:
        prefix, key, _ = split(a)
        parent, _, name = key.rpartition(".")
        if prefix not in ("+", "++") or "=" not in a or "/" in key or OmegaConf.select(cfg, key) is None:
            continue  # a group choice (+experiment=x) adds no key
        node = OmegaConf.select(cfg, parent) if parent else cfg
        node_type = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if dataclasses.is_dataclass(node_type) and name not in {f.name for f in dataclasses.fields(node_type)}:
            added.append(key)
    return added


def compose_and_check(command: str, args: list[str]) -> bool:
    """Compose once before Hydra runs the command and run the one check pass on it
    (:func:`~lstm_pipeline.config.checks.check`), so that every problem is reported before any
    directory is made, and a key the config does not have gets :func:`did_you_mean`'s one line (with
    or without ``+``) instead of Hydra's block advising ``+``. Returns whether the config was checked:
    False for ``--help``, ``--cfg`` and ``-m`` (each job of a sweep is checked as Hydra composes it)
    and for a composition error Hydra then reports itself. Raises ``ConfigError`` and the checks' errors."""
    if any(a.startswith("-") for a in args):
        return False
    try:
        cfg = compose(command, args, return_hydra_config=True)
    except (ConfigCompositionException, HydraException):
        return False
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} reads it (run_dir); Hydra sets its own when it runs
    with open_dict(cfg):
        del cfg["hydra"]
    check(command, cfg)
    return True


def resolve_keeping_text(cfg: DictConfig) -> DictConfig:
    """``OmegaConf.resolve(cfg)`` in place, then every string that reads ``${...}`` (text a user typed,
    such as ``prompt='${oc.env:HOME}'``) escaped again, so reading it later still gives the text
    instead of interpolating it. Returns ``cfg``."""
    OmegaConf.resolve(cfg)
    _escape_strings(cfg)
    return cfg


def _escape_strings(node: DictConfig | ListConfig) -> None:
    raw = OmegaConf.to_container(node, resolve=False)
    keys = range(len(raw)) if isinstance(raw, list) else list(raw)
    for key in keys:
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)):
            _escape_strings(child)
        elif isinstance(raw[key], str) and "${" in raw[key]:
            node[key] = no_interpolation(raw[key])


#: keys holding file paths that are read, resolved against the directory the command was started in
#: when ``hydra.job.chdir=true`` moved the process into the run directory
PATH_KEYS = ("data.path", "data.files", "data.train", "data.validation", "data.test", "tokenizer.path",
             "ckpt_path", "prompts_file", "output_file", "report", "out")
WRITTEN_KEYS = ("output_file", "report", "out")


def absolute_paths(cfg: DictConfig, base: str | None = None) -> None:
    """The relative paths of :data:`PATH_KEYS` in ``cfg`` made absolute against ``base``, in place: a
    written one always, a read one where it exists there (a read path that is not there may be a Hub
    dataset or repo id, left as given). ``base=None``: the directory the command started in, when
    Hydra's ``hydra.job.chdir=true`` moved the process into the run directory (else nothing to do)."""
    if base is None:
        try:
            if not HydraConfig.get().job.chdir:
                return
        except ValueError:  # Hydra is not running this
            return
        base = get_original_cwd()

    def fix(key: str, value: Any) -> Any:
        if not isinstance(value, str) or not value or "://" in value or os.path.isabs(os.path.expanduser(value)):
            return value
        local = Path(base) / value
        return str(local) if key in WRITTEN_KEYS or local.exists() or glob.glob(str(local)) else value

    for key in PATH_KEYS:
        try:
            value = OmegaConf.select(cfg, key)
        except Exception:  # an interpolation that does not resolve here: left for the command to report
            continue
        if isinstance(value, (list, ListConfig)):
            OmegaConf.update(cfg, key, [fix(key, v) for v in value], merge=False, force_add=True)
        elif isinstance(value, str):
            OmegaConf.update(cfg, key, fix(key, value), merge=False, force_add=True)
