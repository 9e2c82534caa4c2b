"""Loading or resuming a run never runs code that the files name.

* :func:`load_checkpoint`: every checkpoint is read with ``torch.load(weights_only=True)``: tensors,
  numbers, strings and containers only. A file that needs anything else (a pickled ``os.system``
  call, a class from some module) is refused with one line naming what it asked for; nothing in it
  is executed.
* :func:`check_targets`: a config is data. Every ``_target_`` in it (at any depth: Hydra instantiates
  nested nodes too) must be on an allow-list before anything is instantiated:

  - a component registered in one of our registries (entry points, plugins' included);
  - a class of ``torch.optim`` (an optimizer), ``torch.optim.lr_scheduler`` (a schedule),
    ``lightning.pytorch.callbacks`` (a callback) or ``lightning.pytorch.loggers`` (a logger);
  - a public name defined in the project's optimizer, schedule and logger modules
    (:data:`PROJECT_MODULES`);
  - a name the user trusts through the environment variable ``LSTM_PIPELINE_ALLOW_TARGETS``
    (comma-separated names or ``module.*`` prefixes).

  Anything else (``shutil.copyfile``, ``torch.load``, ``builtins.exec`` ...) is refused, naming
  the key and the target.
* :func:`check_recorded_overrides`: the overrides a run recorded (``.hydra/overrides.yaml``) are
  composed again on resume; those that reach Hydra itself (``hydra.*``: its callbacks, its logging
  config) are refused, except the harmless ones in :data:`SAFE_HYDRA_OVERRIDES`, and so are those
  naming a place to write (:data:`WRITE_PATH_KEYS`: ``logger.save_dir``, ``data.cache_dir`` ...)
  unless the command line gives them again.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pickle
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

#: module -> the base class every target named in it must be (None: any public name defined there)
ALLOWED_MODULES: dict[str, str | None] = {
    "torch.optim": "torch.optim.Optimizer",
    "torch.optim.lr_scheduler": None,  # classes checked below: LRScheduler or ReduceLROnPlateau
    "lightning.pytorch.callbacks": "lightning.pytorch.callbacks.Callback",
    "lightning.pytorch.loggers": "lightning.pytorch.loggers.Logger",
}
#: the project's own modules whose public names may be targets
PROJECT_MODULES = ("lstm_pipeline.training.ntasgd", "lstm_pipeline.training.schedules",
                   "lstm_pipeline.training.loggers")
#: recorded Hydra overrides that may be replayed on resume (anything else under hydra. is refused)
SAFE_HYDRA_OVERRIDES = ("hydra.verbose", "hydra.job.name", "hydra.run.dir")
#: settings naming where to write: a recorded one is replayed only when given again on the command line
WRITE_PATH_KEYS = ("save_dir", "cache_dir", "tracking_uri", "dirpath", "default_root_dir", "log_dir", "output_dir",
                   "report")
#: environment variable naming further targets the user trusts (see :func:`_allowed_by_environment`)
ALLOW_ENV = "LSTM_PIPELINE_ALLOW_TARGETS"


class UnsafeConfigError(ValueError):
    """A config or checkpoint names code that is not on the allow-list."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds more than weights and plain data."""


# -- checkpoints ------------------------------------------------------------------------------------
def checkpoint_safe_globals() -> list:
    """What the project's own checkpoints need beyond tensors and containers: nothing today (RNG
    states are stored as tensors and lists, hyperparameters as plain dicts); a Lightning ``AttributeDict``
    is listed because other Lightning versions store ``hyper_parameters`` as one."""
    from lightning.fabric.utilities.data import AttributeDict

    return [AttributeDict]


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with the project's allow-list.

    Raises :class:`UnsafeCheckpointError` (one line, naming the file and what it asked to run) for
    a file that needs any other Python object, and ``ValueError`` for a file that is not a
    checkpoint at all. The file's code is never executed."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"(?:GLOBAL|global|Unsupported class)\s+([\w.]+)", text)
        if found is None and "Unsupported operand" in text:  # a pickle stream, but not one torch.save writes
            raise ValueError(f"{path} is not a readable checkpoint (not written by torch.save); pass a .ckpt "
                             f"written by lstm-pipeline train or its run directory.") from None
        what = f" (it asks for {found.group(1)})" if found else ""
        raise UnsafeCheckpointError(
            f"refused to load {path}: it is not a plain-weights checkpoint{what}; loading it could run code, "
            f"so nothing in it was run. Use a checkpoint written by lstm-pipeline train.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                         f"pass a .ckpt written by lstm-pipeline train or its run directory.") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a training checkpoint (no state_dict); pass a .ckpt written by "
                         f"lstm-pipeline train or its run directory.")
    return ckpt


# -- config targets -----------------------------------------------------------------------------------
def _registered_targets() -> set[str]:
    from .. import registry

    out = set()
    for reg in registry.ALL:
        try:
            entries = reg.entries()
        except registry.RegistryError:
            continue
        out.update(e.value.replace(":", ".") for e in entries.values())
    return out


def _resolve(dotted: str) -> tuple[Any, str] | None:
    """The object a ``module.name`` target names when ``module`` is allowed, and that module."""
    module, _, name = dotted.rpartition(".")
    if not module or not name.isidentifier() or name.startswith("_"):
        return None
    if module not in ALLOWED_MODULES and module not in PROJECT_MODULES:
        return None
    mod = importlib.import_module(module)  # allowed modules only: importing them runs nothing of the config's
    obj = getattr(mod, name, None)
    return (obj, module) if obj is not None else None


def _allowed_by_environment(target: str) -> bool:
    """``LSTM_PIPELINE_ALLOW_TARGETS``: comma-separated names (``my_pkg.MyCallback``) or module prefixes
    (``my_pkg.*``) the user trusts beyond the allow-list. An environment variable, not a config key:
    a recorded config cannot extend its own allow-list."""
    for entry in filter(None, (e.strip() for e in os.environ.get(ALLOW_ENV, "").split(","))):
        if target == entry or (entry.endswith(".*") and target.startswith(entry[:-1])):
            return True
    return False


def target_allowed(target: str) -> bool:
    """True if ``target`` (a Hydra ``_target_``) may be instantiated; see the module docstring."""
    if not isinstance(target, str):
        return False
    if target in _registered_targets() or _allowed_by_environment(target):
        return True
    found = _resolve(target)
    if found is None:
        return False
    obj, module = found
    if module in PROJECT_MODULES:
        return getattr(obj, "__module__", None) == module and (inspect.isclass(obj) or inspect.isfunction(obj))
    if not inspect.isclass(obj):
        return False
    if module == "torch.optim.lr_scheduler":
        from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

        return issubclass(obj, (LRScheduler, ReduceLROnPlateau))
    base_mod, _, base_name = ALLOWED_MODULES[module].rpartition(".")
    return issubclass(obj, getattr(importlib.import_module(base_mod), base_name))


def iter_targets(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every ``_target_`` in a nested dict/list config."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if k == "_target_":
                yield key, v
            else:
                yield from iter_targets(v, key)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from iter_targets(v, f"{prefix}[{i}]")


def _check_misspelled(key: str, target: Any) -> None:
    """A name missing from an allowed module (``torch.optim.Adamm``) is a typo, not a foreign target:
    say that, with the closest name."""
    import difflib

    if not isinstance(target, str):
        return
    module, _, name = target.rpartition(".")
    if module not in ALLOWED_MODULES and module not in PROJECT_MODULES:
        return
    mod = importlib.import_module(module)
    if getattr(mod, name, None) is not None:
        return
    close = difflib.get_close_matches(name, [n for n in dir(mod) if not n.startswith("_")], n=1)
    raise ValueError(f"{key}={target} cannot be imported: check the dotted path (module.Name) and that its package "
                     f"is installed." + (f" Did you mean {module}.{close[0]}?" if close else ""))


def check_targets(cfg: Any, source: str = "the config") -> None:
    """Refuse a config holding a ``_target_`` outside the allow-list, naming it, before anything is built.

    ``cfg``: a DictConfig or nested dict (interpolations are not resolved: a ``_target_`` is read as
    written). Raises :class:`UnsafeConfigError`."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    for key, target in iter_targets(cfg):
        if not target_allowed(target):
            _check_misspelled(key, target)
            raise UnsafeConfigError(
                f"{key}={target} in {source} is refused: a _target_ must be a registered component, a class of "
                f"torch.optim, torch.optim.lr_scheduler, lightning.pytorch.callbacks or lightning.pytorch.loggers, "
                f"or one of lstm-pipeline's own optimizers, schedules and loggers. Remove it (~{key.rsplit('.', 1)[0]}), "
                f"register the component as a plugin, or trust it with {ALLOW_ENV}={target}.")


def check_recorded_overrides(overrides: list[str], path: str | os.PathLike) -> None:
    """The overrides recorded in a run's ``.hydra/overrides.yaml`` that resuming replays: a
    ``_target_`` must be allowed, and Hydra's own settings (callbacks, logging, launcher) are not
    replayed. Raises :class:`UnsafeConfigError` naming the override and the file."""
    for o in overrides:
        if not isinstance(o, str):
            raise UnsafeConfigError(f"{path}: '{o}' is not an override (key=value); the file is damaged.")
        key, sep, value = o.partition("=")
        bare = key.lstrip("+~")
        if bare.startswith("hydra.") or bare.startswith("hydra/") or bare == "hydra":
            if bare not in SAFE_HYDRA_OVERRIDES:
                raise UnsafeConfigError(
                    f"{path} records the override '{o}', which reconfigures Hydra itself and is not replayed on "
                    f"resume: remove that line from the file if you trust the rest of the run, or start a new run.")
        if bare.split(".")[-1] in WRITE_PATH_KEYS and value.strip("'\"") not in ("", "null", "None"):
            raise UnsafeConfigError(
                f"{path} records '{o}', a place outside the run directory to write to: resuming does not write "
                f"where a recorded config says. Pass it on the command line if you want it ({o.lstrip('+~')}), or "
                f"remove that line from the file.")
        if bare.split(".")[-1] == "_target_" or "_target_" in bare.split("."):
            if not target_allowed(value.strip("'\"")):
                raise UnsafeConfigError(
                    f"{path} records '{o}': the _target_ {value} is refused (not a registered component nor an "
                    f"allowed optimizer, schedule, callback or logger class). Remove that line or start a new run.")
        if sep and ("_target_" in value):  # a whole node given inline: +callbacks.x={_target_:...}
            try:
                from omegaconf import OmegaConf

                node = OmegaConf.to_container(OmegaConf.create(f"v: {value}"))["v"]
            except Exception:
                raise UnsafeConfigError(f"{path} records '{o}', whose value names a _target_ that cannot be read: "
                                        f"remove that line or start a new run.") from None
            check_targets(node, f"{path} ('{o}')")
