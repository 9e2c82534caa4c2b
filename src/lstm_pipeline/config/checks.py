"""Up-front checks of a composed ``train`` config, before any data is read or directory written.

``config.validate_train_config`` checks that every key of a component node is a parameter of what
it feeds; :func:`validate_train` (called from there) adds what names alone cannot catch:

* value types against the annotations of what each node feeds (``lightning.Trainer``,
  ``RecurrentLM``, the cell), e.g. ``trainer.max_steps=abc`` or ``model.hidden_size=32.5``;
* every ``_target_`` node (optimizer, scheduler, logger, callbacks): its keys against the target's
  signature, e.g. ``+optim.lrr=1``, before anything is built;
* the hardware the trainer asks for (``trainer.accelerator=gpu`` without a GPU, ``devices=0``);
* ranges: ``batching.bptt`` / ``batch_size`` > 0, ``sample.max_new_tokens`` >= 0,
  ``sample.temperature`` > 0 (the sample printed after training is checked before it);
* ``ckpt_path`` names a checkpoint that exists; ``checkpoint.*`` fits ``ModelCheckpoint``;
  ``optimized_metric`` is a metric a run reports.

:func:`check_model_dir` (called by ``hub.load_pretrained``, so by generate, evaluate, export) checks
an exported model directory before loading it: ``config.json``, ``tokenizer.json`` and
``model.safetensors`` (header, tensor names and shapes against the config) and the device.

Every failure raises :class:`ConfigError` (a ``ValueError``) with one line that names the setting
and says what to do; the CLI prints it without a traceback.
"""
from __future__ import annotations

import collections.abc
import importlib
import inspect
import typing
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..registry import ConfigError, check_settings

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
    if isinstance(tp, type):
        # a class a config cannot spell (Accelerator, Logger, timedelta, ...): primitives that are
        # not plain strings/numbers for it would fail inside the callee, which says so itself
        return True
    return True


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        parts = [_describe(a) for a in typing.get_args(tp)]
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
def _positive(cfg: DictConfig, key: str, hint: str) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and value <= 0:
        raise ConfigError(f"{key}={value} is not valid: it must be a positive integer ({hint}).")


def check_ranges(cfg: DictConfig) -> None:
    _positive(cfg, "batching.batch_size", "the number of parallel token streams per process, e.g. 32")
    _positive(cfg, "batching.bptt", "the length of a training window in tokens, e.g. 128")
    _positive(cfg, "batching.eval_batch_size", "the number of streams used for validation, e.g. 16")
    sample = cfg.get("sample")
    if sample is not None:
        if sample.max_new_tokens < 0:
            raise ConfigError(f"sample.max_new_tokens={sample.max_new_tokens} is not valid: give the number of "
                              f"tokens to print after training (>= 0; 0 prints no sample).")
        if sample.max_new_tokens > 0 and not sample.temperature > 0:
            raise ConfigError(f"sample.temperature={sample.temperature} is not valid: it must be > 0 "
                              f"(e.g. 0.8; lower is more conservative), or set sample.max_new_tokens=0 "
                              f"to print no sample after training.")


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


def validate_train(cfg: DictConfig) -> None:
    """Everything :func:`config.validate_train_config` does not check by key names; raises
    :class:`ConfigError` naming the setting."""
    from ..models.lm import RecurrentLM
    from ..registry import CELLS

    check_ranges(cfg)
    check_trainer(_plain(cfg.trainer))
    model = dict(_plain(cfg.model))
    check_types(RecurrentLM, {k: v for k, v in model.items() if k != "cell"}, "model", "the model (RecurrentLM)")
    cell = dict(model.get("cell") or {})
    name = cell.pop("name", None)
    if name is not None and name in CELLS:
        check_types(CELLS.get(name), cell, "model.cell", f"cell '{name}'")
    for key in ("optim", "scheduler", "logger", "callbacks"):
        for path, node in _target_nodes(_plain(cfg.get(key)), key):
            check_target_node(node, path)
    check_budget(cfg)
    check_ckpt_path(cfg.get("ckpt_path"))
    check_checkpoint(_plain(cfg.get("checkpoint")))
    check_optimized_metric(cfg.get("optimized_metric"))


#: what ``train`` returns (its ``optimized_metric`` picks one): the last logged value of each, and
#: ``best_val_loss`` (the best checkpoint's)
RUN_METRICS = ("best_val_loss", *(f"{split}_{m}" for split in ("val", "train")
                                  for m in ("loss", "ppl", "bpc", "bits_per_token", "acc")), "lr", "tokens_per_sec")


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


def check_model_dir(model_dir: str | Path, map_location: Any = "cpu") -> tuple[dict, Any]:
    """Check an exported model directory before it is loaded: ``config.json`` (a JSON object whose
    ``vocab_size`` is an integer and whose ``model`` settings fit ``RecurrentLM``), ``tokenizer.json``
    (a tokenizer the ``tokenizers`` library reads), ``model.safetensors`` (a readable header whose
    tensors have exactly the names and shapes of the model the config describes), and the device.
    Returns what it read, so the loader reads nothing twice: the config (a dict) and the
    ``tokenizers.Tokenizer`` (None where there is no tokenizer.json). Raises :class:`ConfigError`
    naming the file and what to do."""
    import torch
    from safetensors import SafetensorError, safe_open

    from ..models.lm import RecurrentLM
    from ..registry import CELLS

    model_dir = Path(model_dir)
    check_device(map_location)
    config_path = model_dir / "config.json"
    config = _read_json(config_path, dict)
    if config.get("format") not in (None, "lstm-pipeline"):
        return config, None  # not ours: the loader says so
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
        cell = dict(model_cfg.get("cell") or {})
        name = cell.pop("name", None)
        if name is not None and name in CELLS:
            check_types(CELLS.get(name), cell, "model.cell", f"cell '{name}'")
    except ConfigError as exc:
        raise _damaged(config_path, str(exc).split(" Set ")[0]) from None

    tok_path = model_dir / "tokenizer.json"
    tokenizer = None
    if tok_path.is_file():
        _read_json(tok_path, dict)
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as exc:  # the Rust library's error: not a tokenizer it can read
            raise _damaged(tok_path, f"not a tokenizer the tokenizers library can read: {exc}") from None

    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        return config, tokenizer  # the loader names the missing file
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(weights, f"not a readable safetensors file: {exc}") from None
    try:
        with torch.device("meta"):
            model = RecurrentLM(vocab, **model_cfg)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except (TypeError, ValueError) as exc:
        raise _damaged(config_path, f"its model settings do not build a model: {exc}") from None
    # names as RecurrentLM loads them (files of older versions: 'cell.' is 'layers.0.'; the transformers
    # adapter's: 'lm.' prefixed)
    found = {("layers.0." + k[5:]) if k.startswith("cell.") else k: v
             for k, v in ((k[3:] if k.startswith("lm.") else k, v) for k, v in found.items())}
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
    return config, tokenizer


def check_positive_settings(cfg: Any, *keys: str) -> None:
    """``evaluate batch_size=0`` and the like: one line naming the setting."""
    for key in keys:
        value = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"{key}={value} is not valid: it must be a positive integer.")
