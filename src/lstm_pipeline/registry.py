"""Component registries backed by Python entry points.

One :class:`Registry` per extension point (entry-point group). Built-in components are
declared in this project's own ``pyproject.toml`` under the same groups a third-party
plugin uses, so both take one path.

* Listing is lazy: names come from entry-point metadata; nothing is imported until
  :meth:`Registry.get` asks for one component.
* Entry points are read on every call (never snapshotted at import time), so a plugin
  installed or removed while a process lives is seen.
* The same name from two distributions is an error naming both.
* An unknown name is an error listing the available names.
* An import failure is re-raised with the plugin's name, distribution and a hint.
"""
from __future__ import annotations

import difflib
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Iterable, Mapping, Sequence

#: Major version of the plugin API. A component declares the API it was written for with a class
#: attribute ``lstm_pipeline_api = "1"`` (or ``"1.x"``), or its package with a module-level
#: constant ``LSTM_PIPELINE_API = "1"``; another major is refused when the component is loaded.
API_VERSION = "1"


class RegistryError(LookupError):
    """Base class of registry errors (unknown names, duplicates, broken plugins)."""


class UnknownComponentError(RegistryError):
    pass


class DuplicateComponentError(RegistryError):
    pass


class PluginImportError(RegistryError):
    pass


class PluginAPIError(RegistryError):
    pass


class ConfigError(TypeError, ValueError):
    """A config node does not fit what it feeds (unknown or missing setting)."""


@dataclass(frozen=True)
class Entry:
    name: str
    value: str
    distribution: str
    entry_point: EntryPoint

    def load(self) -> Any:
        return self.entry_point.load()


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>"
    return dist.metadata["Name"] or dist.name


class Registry:
    """The components registered under one entry-point group."""

    def __init__(self, group: str, kind: str, config_group: str | None = None, select: str | None = None):
        self.group = group          # entry-point group, e.g. "lstm_pipeline.cells"
        self.kind = kind            # human name, e.g. "cell"
        self.config_group = config_group  # Hydra config group that selects it, e.g. "model/cell"
        # how a user picks one on the command line (default: <config_group>=<name>)
        self.select = select or (f"{config_group}=<name>" if config_group else None)

    # -- listing (no imports) -------------------------------------------------------
    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for ep in entry_points(group=self.group):
            entry = Entry(ep.name, ep.value, _dist_name(ep), ep)
            seen = found.get(ep.name)
            if seen is None:
                found[ep.name] = entry
            elif seen.distribution != entry.distribution:
                raise DuplicateComponentError(
                    f"{self.kind} '{ep.name}' (entry-point group '{self.group}') is registered by two "
                    f"distributions: '{seen.distribution}' ({seen.value}) and '{entry.distribution}' "
                    f"({entry.value}). Uninstall one of them or rename the entry point."
                )
            # the same distribution seen twice on sys.path (e.g. editable + build dir): keep the first
        return dict(sorted(found.items()))

    def names(self) -> list[str]:
        return list(self.entries())

    def __contains__(self, name: str) -> bool:
        return name in self.entries()

    # -- loading ----------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        entries = self.entries()
        if name not in entries:
            available = ", ".join(entries) or "(none installed)"
            close = difflib.get_close_matches(str(name), list(entries), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            how = f" Select one with {self.select}." if self.select else ""
            raise UnknownComponentError(
                f"Unknown {self.kind} '{name}'. Available {self.kind}s: {available}.{hint}{how} "
                f"Plugins add more by registering the entry-point group '{self.group}'."
            )
        return entries[name]

    def get(self, name: str) -> Any:
        entry = self.entry(name)
        try:
            obj = entry.load()
        except Exception as exc:  # re-raised with context, never swallowed
            raise PluginImportError(
                f"{self.kind} '{name}' from distribution '{entry.distribution}' ({entry.value}) failed to "
                f"import: {type(exc).__name__}: {exc}. Reinstall that distribution or check its dependencies."
            ) from exc
        check_api(obj, f"{self.kind} '{name}' from '{entry.distribution}'")
        return obj

    def build(self, cfg: Mapping[str, Any], **runtime: Any) -> Any:
        """Build the component named by ``cfg['name']`` with the remaining fields as keyword
        arguments (plus ``runtime`` ones). Fields the component does not accept are an error."""
        cfg = dict(cfg)
        if "name" not in cfg:
            raise RegistryError(f"The {self.kind} config has no 'name' field: {cfg}")
        name = cfg.pop("name")
        factory = self.get(name)
        validate_kwargs(factory, {**cfg, **runtime}, f"{self.kind} '{name}'", self.config_group)
        return factory(**cfg, **runtime)


def declared_api(obj: Any) -> str | None:
    """The plugin API ``obj`` says it was written for: its ``lstm_pipeline_api`` attribute, else the
    ``LSTM_PIPELINE_API`` constant of its module or of one of that module's parent packages."""
    wanted = getattr(obj, "lstm_pipeline_api", None)
    if wanted is not None:
        return str(wanted)
    module = getattr(obj, "__module__", None) or (obj.__name__ if isinstance(obj, ModuleType) else None)
    parts = module.split(".") if module else []
    while parts:
        mod = sys.modules.get(".".join(parts))
        if mod is not None and getattr(mod, "LSTM_PIPELINE_API", None) is not None:
            return str(mod.LSTM_PIPELINE_API)
        parts.pop()
    return None


def api_compatible(wanted: str) -> bool:
    """``"1"``, ``"1.2"``, ``"1.x"`` are API 1; only the major number decides."""
    return wanted.strip().split(".")[0] == API_VERSION.split(".")[0]


def check_api(obj: Any, what: str) -> None:
    """Refuse a component written for another major version of the plugin API. A component that
    declares nothing is taken as written for the current API."""
    wanted = declared_api(obj)
    if wanted is None or api_compatible(wanted):
        return
    raise PluginAPIError(
        f"{what} was written for lstm-pipeline plugin API {wanted}, but this lstm-pipeline provides "
        f"API {API_VERSION}. Install a release of the plugin made for API {API_VERSION}, or an "
        f"lstm-pipeline that provides API {wanted}."
    )


@dataclass(frozen=True)
class EntryStatus:
    """The result of importing one entry point (``lstm-pipeline plugins --check``)."""
    entry: Entry
    ok: bool
    api: str | None
    error: str | None = None


def check_entry(registry: "Registry", entry: Entry) -> EntryStatus:
    """Import one entry point and check its API version; never raises."""
    try:
        obj = registry.get(entry.name)
    except RegistryError as exc:
        return EntryStatus(entry, False, None, str(exc))
    except Exception as exc:  # a conf package that fails to import
        return EntryStatus(entry, False, None, f"{type(exc).__name__}: {exc}")
    return EntryStatus(entry, True, declared_api(obj))


def check_settings(given: Iterable[str], accepted: Sequence[str], what: str) -> None:
    """Fail on the first setting in ``given`` that is not in ``accepted``, suggesting the closest one
    and listing them all."""
    for key in given:
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{what} does not take the setting '{key}'.{hint} Its settings are: {', '.join(accepted)}.")


def validate_kwargs(factory: Any, kwargs: Mapping[str, Any], what: str, config_group: str | None = None) -> None:
    """Fail loudly, naming the key, when a config field is not a parameter of ``factory``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    check_settings(kwargs, accepted, what)
    missing = [n for n, p in params.items()
               if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and n not in kwargs]
    if missing:
        raise ConfigError(f"{what} needs the setting '{missing[0]}', which the config does not give.")


# One registry per extension point ------------------------------------------------------
DATA_SOURCES = Registry("lstm_pipeline.data_sources", "data source", "data")
TOKENIZERS = Registry("lstm_pipeline.tokenizers", "tokenizer", "tokenizer")
CELLS = Registry("lstm_pipeline.cells", "cell", "model/cell")
DECODERS = Registry("lstm_pipeline.decoders", "decoder", "decoding")
LOGITS_PROCESSORS = Registry("lstm_pipeline.logits_processors", "logits processor")
CALLBACKS = Registry("lstm_pipeline.callbacks", "callback", "callbacks",  # the group's options are files
                     select="+callbacks.<key>={name:<name>} or a file under conf/callbacks/ (callbacks=<file>)")
CONF = Registry("lstm_pipeline.conf", "config package")

ALL: tuple[Registry, ...] = (DATA_SOURCES, TOKENIZERS, CELLS, DECODERS, LOGITS_PROCESSORS, CALLBACKS, CONF)


# Config files that components ship (our config package and installed plugins') -----------
def _config_folders(config_group: str):
    """The folders of ``config_group`` in the packages Hydra searches, in its order (the same list
    the search-path plugin gives Hydra, so a choice we accept is one Hydra can compose)."""
    from importlib import resources

    from hydra_plugins.lstm_pipeline_searchpath.lstm_pipeline_searchpath import PRIMARY, plugin_config_packages

    packages = [PRIMARY, *plugin_config_packages()]
    for pkg in packages:
        try:
            folder = resources.files(pkg).joinpath(*config_group.split("/"))
        except Exception:  # a plugin whose config package fails to import: `plugins --check` says why
            continue
        if folder.is_dir():
            yield folder


def config_options(config_group: str) -> list[str]:
    """The options of a Hydra config group across our config package and installed plugins'."""
    return sorted({f.name[:-5] for folder in _config_folders(config_group) for f in folder.iterdir()
                   if f.name.endswith(".yaml")})


def shipped_config(config_group: str, name: str) -> dict[str, Any] | None:
    """The config node a component ships for itself: ``<config_group>/<name>.yaml`` in our config
    package or an installed plugin's (entry-point group ``lstm_pipeline.conf``), else the first
    file of that group whose ``name:`` is ``name``. ``defaults`` lists are dropped. None if none."""
    from omegaconf import OmegaConf

    candidates = [f for folder in _config_folders(config_group) for f in folder.iterdir() if f.name.endswith(".yaml")]
    candidates.sort(key=lambda f: f.name != f"{name}.yaml")
    for f in candidates:
        node = OmegaConf.to_container(OmegaConf.create(f.read_text()))
        if isinstance(node, dict) and node.get("name") == name:
            node.pop("defaults", None)
            return node
    return None
