"""The one check pass over a composed config (torchtune's ``validate`` is the model).

:func:`check` (``check(command, cfg)``) runs once per command, before anything is built, read or
written: the CLI calls it right before the command's ``run(cfg)``, and ``api.train`` before the run
directory is made. It gathers every problem, not just the first, and raises one error that lists
each on its own line (what is wrong, what to do). Per command:

* ``train``: a preset's ``'???'`` values; every ``_target_`` against the allow-list
  (``training.safety``, first and alone: nothing is imported for a refused one); the component
  nodes (``data``, ``tokenizer``, ``model``, ``model.cell``, callbacks) against what they feed;
  value types against the annotations of ``lightning.Trainer``, ``RecurrentLM``, the cell and each
  ``_target_`` node (``trainer.max_steps=abc``, ``optim.lr=abc``, ``+optim.lrr=1``); the hardware
  the trainer asks for; ranges (sizes > 0, ``trainer.max_steps`` >= -1, ``val_check_interval``,
  ``gradient_clip_val`` >= 0, the end-of-run sample, its temperature whatever ``max_new_tokens``:
  a setting is checked whether or not this run uses it); ``budget``; ``ckpt_path``; ``checkpoint.*``; ``optimized_metric``;
* ``generate``: the decoding, counts, the mode, ``prompts_file`` (a UTF-8 file; a bad byte named by
  line) and ``output_file`` (not a directory);
* ``evaluate``: ``batch_size`` and ``bptt``; ``export``: ``format`` and ``out``; ``serve``: the
  decoding and the port; ``plot``, ``push``: their schema's types only.

:func:`check_model_dir` (called by ``artifacts.model_dir.load_pretrained``, so by generate, evaluate,
export, serve) checks an exported model directory when it is loaded: ``config.json``,
``tokenizer.json`` (its ids fit the model's vocabulary), ``model.safetensors`` (header, tensor
names, shapes and floating-point dtypes against the config) and the device.

Each problem is a :class:`ConfigError` (a ``ValueError``) or a ``LookupError``/``FileNotFoundError``
with one line that names the setting or file and says what to do; the CLI prints it without a
traceback.
"""
from __future__ import annotations

import collections.abc
import importlib
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..registry import (
    CALLBACKS,
    CELLS,
    DATA_SOURCES,
    DECODERS,
    TOKENIZERS,
    ConfigError,
    check_settings,
    validate_kwargs,
)
from .schema import _missing_keys

#: keys Hydra's ``instantiate`` reads itself; never parameters of the target
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
#: keys of a ``_target_`` node that the pipeline consumes before building it, per node
_CONSUMED = {"scheduler": {"interval", "monitor", "frequency"}}
#: parameters the pipeline passes itself (never from the config), per node
_PASSED = {"optim": {"params"}, "scheduler": {"optimizer"}}


# -- value types ------------------------------------------------------------------------------
def _matches(value: Any, tp: Any) -> bool:
    """Whether a config value fits annotation ``tp``; True where the annotation is beyond a config
    value (a class such as ``Accelerator``) or cannot be judged."""
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if isinstance(value, Mapping) and "_target_" in value:
        return True  # an object built by Hydra: its own node is checked separately
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin in (dict, collections.abc.Mapping) or tp in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    if _is_tensor(tp):
        return False  # a config gives numbers, never tensors: lr=abc against float | Tensor is wrong
    if isinstance(tp, type):
        # a class a config cannot spell (Accelerator, Logger, timedelta, ...): primitives that are
        # not plain strings/numbers for it would fail inside the callee, which says so itself
        return True
    return True


def _is_tensor(tp: Any) -> bool:
    return isinstance(tp, type) and tp.__name__ == "Tensor" and tp.__module__.startswith("torch")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_describe(a) for a in typing.get_args(tp) if not _is_tensor(a)]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if tp is type(None):
        return "null"
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _hints(factory: Any) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # annotations that do not resolve: judge nothing
        return {}


def check_types(factory: Any, node: Mapping[str, Any], prefix: str, what: str) -> None:
    """Raise naming ``<prefix>.<key>=<value>`` when a value does not fit the parameter's annotation."""
    hints = _hints(factory)
    for key, value in node.items():
        tp = hints.get(key)
        if tp is None or _matches(value, tp):
            continue
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        raise ConfigError(f"{prefix}.{key}={shown} is not valid: {what} takes {_describe(tp)} for '{key}'. "
                          f"Set {prefix}.{key}=<{_describe(tp)}>.")


# -- _target_ nodes ---------------------------------------------------------------------------
def _locate(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        obj = importlib.import_module(module) if module else None
        return getattr(obj, name)
    except (ImportError, AttributeError):
        try:
            from hydra.utils import get_object

            return get_object(path)
        except Exception:
            return None


def check_target_node(node: Mapping[str, Any], key: str) -> None:
    """Check a ``_target_`` node's keys (and simple value types) against the target's signature."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    factory = _locate(target)
    if factory is None:
        raise ConfigError(f"{key}._target_={target} cannot be imported: check the dotted path (module.Name) "
                          f"and that its package is installed.")
    head = key.split(".")[0]
    given = {k: v for k, v in node.items() if k not in _HYDRA_KEYS and k not in _CONSUMED.get(head, set())}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                    and n not in _PASSED.get(head, set()) and n != "self"]
        try:
            check_settings(given, accepted, f"{key} ({target})")
        except ConfigError as exc:
            bad = next(k for k in given if k not in accepted)
            raise ConfigError(f"{key}.{bad}: {exc} Remove it (~{key}.{bad} on the command line) or correct the name.") from None
    check_types(factory, given, key, target)


def _target_nodes(node: Any, path: str):
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield path, node
        for k, v in node.items():
            if k not in _HYDRA_KEYS:
                yield from _target_nodes(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _target_nodes(v, f"{path}[{i}]")


# -- hardware ---------------------------------------------------------------------------------
def check_devices(trainer: Mapping[str, Any]) -> None:
    import torch

    accelerator = str(trainer.get("accelerator", "auto")).lower()
    devices = trainer.get("devices", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no usable GPU "
                          f"(torch.cuda.is_available() is False): use trainer.accelerator=cpu (or trainer=cpu), "
                          f"or trainer.accelerator=auto to take a GPU only where there is one.")
    if accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("trainer.accelerator=mps but Apple's MPS backend is not available here: "
                          "use trainer.accelerator=cpu or auto.")
    if isinstance(devices, bool) or (isinstance(devices, int) and devices == 0) or \
            (isinstance(devices, int) and devices < -1) or (isinstance(devices, (list, tuple)) and not devices):
        raise ConfigError(f"trainer.devices={devices} is not valid: give a positive number of devices (e.g. "
                          f"trainer.devices=1), a list of device indices, -1 for all, or auto.")
    if isinstance(devices, str) and devices not in ("auto", "-1") and not devices.replace(",", "").strip().isdigit():
        raise ConfigError(f"trainer.devices='{devices}' is not valid: give a number (trainer.devices=1), "
                          f"a list of indices (trainer.devices=[0,1]), -1 or auto.")
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise ConfigError(f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s): "
                          f"lower trainer.devices.")


# -- ranges -----------------------------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(cfg: Any, key: str, hint: str = "") -> None:
    """``key`` (a dotted path in ``cfg``) is a positive integer where set; a value of another type is
    left to the type checks, which name what it must be."""
    value = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else cfg.get(key)
    if _number(value) and value <= 0:
        raise ConfigError(f"{key}={value} is not valid: it must be a positive integer" + (f" ({hint})." if hint else "."))


#: (key, what it is) of the train settings that must be positive integers where set
POSITIVE_TRAIN = (
    ("batching.batch_size", "the number of parallel token streams per process, e.g. 32"),
    ("batching.bptt", "the length of a training window in tokens, e.g. 128"),
    ("batching.eval_batch_size", "the number of streams used for validation, e.g. 16"),
    ("model.embedding_dim", "the width of the token embeddings, e.g. 64"),
    ("model.hidden_size", "the recurrent width, e.g. 256"),
    ("model.num_layers", "the number of stacked layers, e.g. 2"),
    ("tokenizer.vocab_size", "the number of tokens the tokenizer learns, e.g. 8000"),
    ("trainer.accumulate_grad_batches", "batches per optimizer step, e.g. 1"),
    ("trainer.check_val_every_n_epoch", "epochs between validations, e.g. 1; null validates by steps only"),
)


def _step_limit(cfg: DictConfig, key: str) -> None:
    """``trainer.max_steps`` / ``max_epochs``: -1 (no limit) or >= 0 (Lightning refuses other negatives)."""
    value = OmegaConf.select(cfg, key)
    if _number(value) and value < -1:
        raise ConfigError(f"{key}={value} is not valid: give a number >= 0, or -1 for no limit "
                          f"(e.g. {key}=1000).")


def _val_check_interval(cfg: DictConfig) -> None:
    """``trainer.val_check_interval``: a positive number of batches, or a fraction of an epoch in (0, 1]."""
    value = OmegaConf.select(cfg, "trainer.val_check_interval")
    if not _number(value):
        return
    if (isinstance(value, int) and value <= 0) or (isinstance(value, float) and not 0 < value <= 1):
        raise ConfigError(f"trainer.val_check_interval={value} is not valid: give a positive number of training "
                          f"batches between validations (e.g. 200), or a fraction of an epoch in (0, 1] (e.g. 0.25).")


def check_sample(sample: Any) -> None:
    """``sample.*``, the sample printed after training: checked before training."""
    if sample is None:
        return
    if _number(sample.max_new_tokens) and sample.max_new_tokens < 0:
        raise ConfigError(f"sample.max_new_tokens={sample.max_new_tokens} is not valid: give the number of "
                          f"tokens to print after training (>= 0; 0 prints no sample).")
    # checked whatever max_new_tokens: the temperature is also the model's default decoding
    # (generation_config.json) and its card's sample, written after training
    if not (_number(sample.temperature) and sample.temperature > 0):
        raise ConfigError(f"sample.temperature={sample.temperature} is not valid: it must be > 0 "
                          f"(e.g. 0.8; lower is more conservative). It is also the exported model's default "
                          f"decoding, so it is checked even with sample.max_new_tokens=0.")


def _non_negative(cfg: DictConfig, key: str, hint: str) -> None:
    """``key`` is >= 0 where set: a negative value is not a quiet "off"."""
    value = OmegaConf.select(cfg, key)
    if _number(value) and value < 0:
        raise ConfigError(f"{key}={value} is not valid: it must be >= 0 ({hint}).")


def _check_ranges(cfg: DictConfig, problems: _Problems) -> None:
    for key, hint in POSITIVE_TRAIN:
        problems(_positive, cfg, key, hint)
    problems(_step_limit, cfg, "trainer.max_steps")
    problems(_step_limit, cfg, "trainer.max_epochs")
    problems(_val_check_interval, cfg)
    problems(_non_negative, cfg, "trainer.gradient_clip_val",
             "the largest gradient norm or value kept, e.g. 0.25; 0 or null turns clipping off")
    problems(_non_negative, cfg, "trainer.log_every_n_steps", "training steps between logged metrics, e.g. 50")
    problems(check_sample, cfg.get("sample"))


def check_budget(cfg: DictConfig) -> None:
    """``budget``: a duration (training.budget.parse_budget), not together with ``trainer.max_time``."""
    budget = cfg.get("budget")
    if budget is None:
        return
    from ..training.budget import parse_budget

    try:
        parse_budget(budget)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.trainer.get("max_time") is not None:
        raise ConfigError(f"budget={budget} and trainer.max_time={cfg.trainer.max_time} both limit the training time: "
                          f"keep one of them.")


def check_ckpt_path(ckpt_path: Any) -> None:
    if not ckpt_path:
        return
    p = Path(str(ckpt_path)).expanduser()
    if p.is_dir():  # training.train.resolve_checkpoint picks last.ckpt, else the newest complete checkpoint
        if not any((p / "checkpoints").glob("*.ckpt")):
            raise ConfigError(f"ckpt_path={ckpt_path}: the directory has no checkpoints/last.ckpt (nor another .ckpt) to resume from; "
                              f"pass a run directory written by 'lstm-pipeline train' or a .ckpt file.")
    elif not p.exists():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist: pass a run directory or a .ckpt file.")
    elif p.suffix != ".ckpt":
        raise ConfigError(f"ckpt_path={ckpt_path} is not a checkpoint (.ckpt file): pass a run directory or "
                          f"one of its checkpoints/*.ckpt files.")


#: Trainer arguments the pipeline passes itself: set through their own config groups
_PIPELINE_TRAINER_ARGS = {"callbacks": "callbacks=<file> or +callbacks.<key>={name:...}", "logger": "logger=<name>",
                          "default_root_dir": "hydra.run.dir=<dir>", "plugins": "(not settable)",
                          "use_distributed_sampler": "(not settable: the data module shards the streams itself)"}


def check_trainer(trainer: Mapping[str, Any]) -> None:
    import lightning as L

    for key, use in _PIPELINE_TRAINER_ARGS.items():
        if key in trainer:
            raise ConfigError(f"trainer.{key} is set by the pipeline itself, not in the trainer config: "
                              f"remove it and use {use}.")
    if trainer.get("precision") == "auto":  # resolved by the run (training.budget.auto_precision)
        trainer = {k: v for k, v in trainer.items() if k != "precision"}
    check_types(L.Trainer, trainer, "trainer", "lightning.Trainer")
    check_devices(trainer)


# -- the entry point --------------------------------------------------------------------------
def _plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation that only a running Hydra app resolves (${hydra:...}): as written
            return OmegaConf.to_container(node, resolve=False)
    return node


def _check_component(registry: Any, node: Any, what: str, **runtime: Any) -> None:
    """A component node (``data``, ``tokenizer``, ``model.cell``, a callback): its ``name`` is
    registered and its keys are settings of what it names."""
    node = dict(_plain(node) or {})
    name = node.pop("name", None)
    if name is None:
        raise ConfigError(f"The {what} config needs a 'name' (one of: {', '.join(registry.names())}).")
    registry.validate(name, node, f"{registry.kind} '{name}' ({what})", **runtime)


def _check_model(model: dict) -> None:
    """``model.*``: settings of ``RecurrentLM`` and values of the types it takes (the cell's too)."""
    from ..models.lm import RecurrentLM

    validate_kwargs(RecurrentLM, {"vocab_size": 1, **model}, "model")
    check_types(RecurrentLM, {k: v for k, v in model.items() if k != "cell"}, "model", "the model (RecurrentLM)")


def _check_cell_types(cell: dict) -> None:
    cell = dict(cell or {})
    name = cell.pop("name", None)
    if name is not None and name in CELLS:
        check_types(CELLS.get(name), cell, "model.cell", f"cell '{name}'")


def _check_train_trainer(trainer: dict) -> None:
    import lightning as L

    validate_kwargs(L.Trainer, trainer, "trainer (lightning.Trainer)")
    check_trainer(trainer)


def _check_train(cfg: DictConfig, problems: _Problems) -> None:
    """Every check of a composed ``train`` config (see the module docstring)."""
    missing = _missing_keys(cfg)
    if missing:  # a preset's '???': nothing else can be read until it is set
        raise ConfigError(f"{', '.join(missing)} must be set: add {missing[0]}=<value> to the command line "
                          f"(the chosen config leaves {'it' if len(missing) == 1 else 'them'} as '???').")
    from ..training.safety import (
        check_targets,  # torch: loaded only when a train config is checked
    )

    written = OmegaConf.to_container(cfg, resolve=False)  # a _target_ as written; Hydra's own node is not ours
    written.pop("hydra", None)
    check_targets(written, "the train config")  # first, alone: nothing is imported for a refused _target_
    problems(_check_component, DATA_SOURCES, cfg.data, "data")
    problems(_check_component, TOKENIZERS, cfg.tokenizer, "tokenizer")
    model = dict(_plain(cfg.model))
    problems(_check_model, model)
    problems(_check_component, CELLS, model.get("cell"), "model.cell",
             input_size=1, hidden_size=1, num_layers=1, dropout=0.0)
    problems(_check_cell_types, model.get("cell"))
    problems(_check_train_trainer, dict(_plain(cfg.trainer)))
    for key, node in (_plain(cfg.get("callbacks")) or {}).items():
        if node is not None and "_target_" not in node:
            problems(_check_component, CALLBACKS, node, f"callbacks.{key}")
    for key in ("optim", "scheduler", "logger", "callbacks"):
        for path, node in _target_nodes(_plain(cfg.get(key)), key):
            problems(check_target_node, node, path)
    _check_ranges(cfg, problems)
    problems(check_budget, cfg)
    problems(check_ckpt_path, cfg.get("ckpt_path"))
    problems(check_checkpoint, _plain(cfg.get("checkpoint")))
    problems(check_optimized_metric, cfg.get("optimized_metric"))
    problems(check_chat_template, cfg.get("chat_template"))


#: what ``train`` returns (its ``optimized_metric`` picks one): the last logged value of each, and
#: ``best_val_loss`` (the best checkpoint's)
RUN_METRICS = ("best_val_loss", *(f"{split}_{m}" for split in ("val", "train")
                                  for m in ("loss", "ppl", "bpc", "bits_per_token", "acc")), "lr", "tokens_per_sec")


def check_chat_template(template: Any) -> None:
    """Raises ``ValueError`` (one line) when ``template`` (train's ``chat_template``) is not Jinja text
    that compiles; None (the built-in template) passes."""
    if template is None:
        return
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"chat_template must be Jinja text (or null for the built-in one), got {template!r}.")
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(template)
    except TemplateSyntaxError as exc:
        raise ValueError(f"chat_template is not valid Jinja: {exc.message} (line {exc.lineno}); see docs/serve.md "
                         f"'Chat' for an example.") from None


def check_optimized_metric(name: Any) -> None:
    if name and name not in RUN_METRICS:
        import difflib

        close = difflib.get_close_matches(str(name), RUN_METRICS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"optimized_metric={name} is not a metric a run reports.{hint} "
                          f"Choose one of: {', '.join(RUN_METRICS)}.")


def check_checkpoint(node: Any) -> None:
    """``checkpoint.*``: the arguments of ``lightning ModelCheckpoint`` except ``dirpath``."""
    if not node:
        return
    from lightning.pytorch.callbacks import ModelCheckpoint

    accepted = [n for n in inspect.signature(ModelCheckpoint).parameters if n != "dirpath"]
    try:
        check_settings(node, accepted, "checkpoint (lightning ModelCheckpoint)")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the directory is always <run dir>/checkpoints)") from None
    check_types(ModelCheckpoint, node, "checkpoint", "lightning ModelCheckpoint")


# -- a model directory (generate, evaluate, export) ------------------------------------------
def check_device(device: Any, key: str = "device") -> None:
    """``device=cuda`` (or ``cuda:N``/``mps``) on a machine without it: one line naming ``key``."""
    import torch

    name = str(device)
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}={name} is not a device: use {key}=cpu, {key}=cuda or {key}=cuda:<index>.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but this machine has no usable GPU (torch.cuda.is_available() is False): "
                              f"use {key}=cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name} but this machine has {torch.cuda.device_count()} GPU(s): "
                              f"use an index below {torch.cuda.device_count()}.")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"{key}={name} but Apple's MPS backend is not available here: use {key}=cpu.")


def _damaged(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path} is damaged ({why}): copy it again from where the model came from, or export "
                       f"the run again (lstm-pipeline train ckpt_path=<run dir> with no steps left re-exports it).")


def _read_json(path: Path, kind: type) -> Any:
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not text.strip():
        raise _damaged(path, "the file is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, kind):
        raise _damaged(path, f"expected a JSON {'object' if kind is dict else kind.__name__}, "
                             f"found {type(value).__name__}")
    return value


def _check_token_ids(tokenizer: Any, vocab: int, path: Path) -> None:
    """Every id of the tokenizer (added tokens too) is a row of the model's embedding (< ``vocab``).
    A tokenizer with more tokens than that is ``integrity.check_loaded_model``'s to name, after loading."""
    ids = tokenizer.get_vocab(with_added_tokens=True)
    token, top = max(ids.items(), key=lambda kv: kv[1], default=(None, -1))
    if top >= vocab and len(ids) <= vocab:
        raise _damaged(path, f"token {token!r} has id {top}, beyond the model's vocabulary of {vocab} "
                             f"(ids 0..{vocab - 1}, config.json vocab_size): the tokenizer is not this model's")


def check_model_dir(model_dir: str | Path, map_location: Any = "cpu") -> tuple[dict, Any]:
    """Check an exported model directory before it is loaded: ``config.json`` (a JSON object whose
    ``vocab_size`` is an integer and whose ``model`` settings fit ``RecurrentLM``), ``tokenizer.json``
    (a tokenizer the ``tokenizers`` library reads, whose ids fit the model's vocabulary),
    ``model.safetensors`` (a readable header whose tensors have exactly the names and shapes of the
    model the config describes), and the device.
    Returns what it read, so the loader reads nothing twice: the config (a dict) and the
    ``tokenizers.Tokenizer`` (None where there is no tokenizer.json). Raises :class:`ConfigError`
    naming the file and what to do."""
    model_dir = Path(model_dir)
    check_device(map_location)
    config = _read_json(model_dir / "config.json", dict)
    if config.get("format") not in (None, "lstm-pipeline"):
        return config, None  # not ours: the loader says so
    _check_model_config(config, model_dir / "config.json")
    tokenizer = _read_tokenizer(model_dir / "tokenizer.json", config["vocab_size"])
    weights = model_dir / "model.safetensors"
    if weights.is_file():  # else the loader names the missing file
        _check_weights(weights, config, model_dir / "config.json")
    return config, tokenizer


def _check_model_config(config: dict, config_path: Path) -> None:
    """``config.json``: ``vocab_size`` a positive integer, ``model`` settings of this ``RecurrentLM``."""
    from ..models.lm import RecurrentLM

    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab <= 0:
        raise _damaged(config_path, f"vocab_size must be a positive integer, found {vocab!r}")
    model_cfg = config.get("model")
    if not isinstance(model_cfg, dict):
        raise _damaged(config_path, f"'model' must be an object of model settings, found {type(model_cfg).__name__}")
    params = inspect.signature(RecurrentLM).parameters
    unknown = [k for k in model_cfg if k not in params]
    if unknown:
        raise _damaged(config_path, f"model setting '{unknown[0]}' is not a setting of this version's RecurrentLM "
                                    f"(settings: {', '.join(p for p in params if p != 'vocab_size')}); it may come "
                                    f"from a newer lstm-pipeline: upgrade, or remove the field")
    try:
        check_types(RecurrentLM, {k: v for k, v in model_cfg.items() if k != "cell"}, "model", "RecurrentLM")
        _check_cell_types(model_cfg.get("cell"))
    except ConfigError as exc:
        raise _damaged(config_path, str(exc).split(" Set ")[0]) from None


def _read_tokenizer(tok_path: Path, vocab: int) -> Any:
    """``tokenizer.json`` read by the ``tokenizers`` library, its ids checked; None where there is none."""
    if not tok_path.is_file():
        return None
    _read_json(tok_path, dict)
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tok_path))
    except Exception as exc:  # the Rust library's error: not a tokenizer it can read
        raise _damaged(tok_path, f"not a tokenizer the tokenizers library can read: {exc}") from None
    _check_token_ids(tokenizer, vocab, tok_path)
    return tokenizer


def _check_weights(weights: Path, config: dict, config_path: Path) -> None:
    """``model.safetensors``: a readable header, the tensor names and shapes of the configured model."""
    import torch
    from safetensors import SafetensorError, safe_open

    from ..models.lm import RecurrentLM

    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(weights, f"not a readable safetensors file: {exc}") from None
    try:
        with torch.device("meta"):
            model = RecurrentLM(config["vocab_size"], **config["model"])
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        floating = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    except (TypeError, ValueError) as exc:
        raise _damaged(config_path, f"its model settings do not build a model: {exc}") from None
    # names as RecurrentLM loads them (files of older versions: 'cell.' is 'layers.0.'; the transformers
    # adapter's: 'lm.' prefixed)
    def as_loaded(k: str) -> str:
        k = k[3:] if k.startswith("lm.") else k
        return "layers.0." + k[5:] if k.startswith("cell.") else k

    found = {as_loaded(k): v for k, v in found.items()}
    _check_dtypes({as_loaded(k): d for k, d in dtypes.items() if as_loaded(k) in floating}, weights)
    # tied weights are one tensor under two names (head.weight is embedding.weight): either name will do
    twins: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        twins.setdefault(id(param), []).append(name)
    for names in twins.values():
        present = next((n for n in names if n in found), None)
        if present is not None:
            for n in names:
                found.setdefault(n, found[present])
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and found[k] != expected[k]]
    if missing:
        raise _damaged(weights, f"tensor '{missing[0]}' is missing ({len(missing)} of {len(expected)} missing)")
    if extra:
        raise _damaged(weights, f"tensor '{extra[0]}' is not part of the model config.json describes")
    if wrong:
        k = wrong[0]
        raise _damaged(weights, f"tensor '{k}' has shape {list(found[k])}, the model config.json describes "
                                f"needs {list(expected[k])}")


#: safetensors dtype names of floating-point tensors (what a model's weights are)
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4")


def _check_dtypes(dtypes: Mapping[str, str], weights: Path) -> None:
    """Every tensor the model holds as floating point is floating point in the file (``dtypes``: those
    tensors' safetensors dtypes): integer or boolean weights would be loaded, cast, and print garbage.
    Integer buffers of the model (the adaptive softmax's ``adaptive_rank``) are left to the shape check."""
    bad = [k for k, d in dtypes.items() if d.upper() not in _FLOAT_DTYPES]
    if bad:
        raise _damaged(weights, f"tensor '{bad[0]}' has dtype {dtypes[bad[0]]}, not a floating-point type "
                                f"({len(bad)} of {len(dtypes)} tensors are not floating point)")


# -- generate, evaluate, export, serve ---------------------------------------------------------
def _not_a_directory(path: Any, key: str, what: str) -> None:
    if path is not None and Path(str(path)).expanduser().is_dir():
        raise ConfigError(f"{key}={path} is a directory: give a file name ({what}), e.g. {key}={Path(str(path)) / 'out'}"
                          f"{'.jsonl' if key == 'output_file' else '.onnx'}.")


def _check_prompts_file(path: Any) -> None:
    """``prompts_file``: an existing UTF-8 text file, one prompt a line; a bad byte is named by line."""
    if path is None:
        return
    p = Path(str(path)).expanduser()
    if p.is_dir():
        raise FileNotFoundError(f"prompts_file={path} is a directory, not a text file (one prompt a line).")
    if not p.is_file():
        raise FileNotFoundError(f"prompts_file={path}: no such file (one prompt a line).")
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"prompts_file={path} is not valid UTF-8: line {line}, byte offset {exc.start} "
                          f"({exc.reason}). Save the file as UTF-8 text (one prompt a line).") from None


def _check_generate_modes(cfg: DictConfig) -> None:
    if cfg.prompts_file is not None and cfg.interactive:
        raise ConfigError("prompts_file= and interactive=true are two different modes: choose one.")
    if cfg.output_file is not None and cfg.prompts_file is None:
        raise ConfigError("output_file= is written in prompts_file mode only: also pass prompts_file=<file>.")


def _at_least(cfg: DictConfig, key: str, low: int) -> None:
    value = cfg.get(key)
    if _number(value) and value < low:
        raise ConfigError(f"{key}={value} is not valid: it must be >= {low}.")


def _check_decoding(node: Any) -> None:
    decoding = _plain(node)
    if decoding and "name" in decoding:
        DECODERS.build(decoding)  # builds nothing heavy: a strategy and its processors


def _check_generate(cfg: DictConfig, problems: _Problems) -> None:
    problems(_check_decoding, cfg.get("decoding"))
    problems(_at_least, cfg, "max_new_tokens", 0)
    problems(_at_least, cfg, "num_samples", 1)
    problems(_at_least, cfg, "batch_size", 1)
    problems(_check_generate_modes, cfg)
    problems(_check_prompts_file, cfg.prompts_file)
    problems(_not_a_directory, cfg.output_file, "output_file", "the JSON lines written in prompts_file mode")


def _check_evaluate(cfg: DictConfig, problems: _Problems) -> None:
    problems(_positive, cfg, "batch_size")
    problems(_positive, cfg, "bptt")


def _check_export_format(fmt: Any) -> None:
    from ..artifacts.export import (
        FORMATS,  # torch: loaded only when an export config is checked
    )

    if str(fmt) not in FORMATS:
        raise ConfigError(f"format={fmt} is not an export format: use one of format={', format='.join(FORMATS)}.")


def _check_export(cfg: DictConfig, problems: _Problems) -> None:
    problems(_check_export_format, cfg.format)
    problems(_not_a_directory, cfg.out, "out", "the step module written")


def _check_serve(cfg: DictConfig, problems: _Problems) -> None:
    problems(_check_decoding, cfg.get("decoding"))
    port = cfg.get("port")
    if _number(port) and not 0 <= port <= 65535:
        problems.add(ConfigError(f"port={port} is not valid: give a TCP port from 0 to 65535 (e.g. port=8000)."))


def _check_nothing(cfg: DictConfig, problems: _Problems) -> None:
    """``plot`` and ``push``: their schema's types are all there is to check before they read the run."""


# -- the one pass -----------------------------------------------------------------------------
class _Problems:
    """The problems found so far: each check runs, its one-line error is kept, and the next runs."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    def add(self, exc: Exception) -> None:
        if str(exc) not in map(str, self.errors):
            self.errors.append(exc)

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (ValueError, LookupError, FileNotFoundError) as exc:  # ConfigError is a ValueError
            self.add(exc)

    def raise_them(self, command: str) -> None:
        """One problem: its own error (its type kept). Several: one :class:`ConfigError`, a line each."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = "\n".join(f"  - {e}" for e in self.errors)
            raise ConfigError(f"{len(self.errors)} problems in the {command} config, one a line:\n{lines}")


#: command -> its checks
_CHECKS = {"train": _check_train, "generate": _check_generate, "evaluate": _check_evaluate,
           "export": _check_export, "serve": _check_serve, "plot": _check_nothing, "push": _check_nothing}


def check(command: str, cfg: DictConfig) -> None:
    """The one check pass over ``command``'s composed config, before anything is built or written.

    ``command``: train, generate, evaluate, export, plot, push or serve (another name: nothing to
    check). Gathers every problem, not just the first. Raises the problem's own error (a
    ``ValueError``, ``LookupError`` or ``FileNotFoundError``, one line: what is wrong, what to do)
    where there is one, else one :class:`ConfigError` listing each on its own line."""
    checks = _CHECKS.get(command)
    if checks is None:
        return
    problems = _Problems()
    checks(cfg, problems)
    problems.raise_them(command)
