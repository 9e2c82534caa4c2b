"""Component registries backed by Python entry points.

One :class:`Registry` per extension point (entry-point group). Built-in components are
declared in this project's own ``pyproject.toml`` under the same groups a third-party
plugin uses, so both take one path.

* Listing is lazy: names come from entry-point metadata; nothing is imported until
  :meth:`Registry.get` asks for one component.
* Entry points are read when first needed and read again whenever the installed distributions
  may have changed (:func:`_entry_points`: ``sys.path``, the modification times of its
  directories, and of the metadata of every distribution that registers a component), so a
  plugin installed or removed while a process lives is seen, and a lookup is a few ``stat``
  calls instead of parsing every installed distribution's metadata (~10 ms).
* The same name from two distributions is an error naming both, raised only when that name is
  selected (and reported by ``lstm-pipeline plugins --check``): the other names keep working.
* An unknown name is an error listing the available names; where the run being used records the
  distribution that provided it (:func:`write_provenance`), the error says which one to install.
* An import failure is re-raised with the plugin's name, distribution and a hint.
* Every component's plugin API is found the same way (:func:`declared_api`) and another major
  version is refused when the component is loaded.
"""
from __future__ import annotations

import difflib
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Iterable, Mapping, Sequence

#: Major version of the plugin API. A component declares the API it was written for with a class
#: attribute ``lstm_pipeline_api = "1"`` (or ``"1.x"``) set in its own package, or its package with
#: a module-level constant ``LSTM_PIPELINE_API = "1"``; another major is refused when the component
#: is loaded. The attribute lstm-pipeline's base classes carry is never taken as the plugin's.
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
    version: str | None = None  # of the distribution

    def load(self) -> Any:
        return self.entry_point.load()


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>"
    return dist.metadata["Name"] or dist.name


def _dist_version(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    try:
        return dist.version if dist is not None else None
    except Exception:  # metadata without a version
        return None


#: (entry-point group, name) -> provenance record of a component the run in use was made with
#: (set by :func:`expect_components`); an unknown name found here says which distribution to install
_EXPECTED: dict[tuple[str, str], dict[str, Any]] = {}


def install_hint(record: Mapping[str, Any]) -> str:
    """``pip install 'dist==version'`` for a provenance record."""
    dist, version = record.get("distribution"), record.get("version")
    return f"pip install '{dist}=={version}'" if version else f"pip install '{dist}'"


#: every entry point by group, with the fingerprint of the installation they were read from
_SCANNED: dict[str, Any] = {"key": None, "groups": {}, "watch": (), "generation": 0}
#: the groups registries were made for (their distributions' metadata is watched)
_GROUPS: set[str] = set()


def _fingerprint(watch: Sequence[str]) -> tuple:
    """What changes when a distribution is installed, removed or has its entry points edited:
    ``sys.path``, the status (modification time, links, size, inode) of each of its directories (a
    dist-info directory appears or goes), and that of the ``watch`` files and directories (the
    metadata of the distributions that register components: an entry_points.txt edited or deleted
    in place)."""
    key: list[Any] = [tuple(sys.path)]
    for path in (*sys.path, *watch):
        try:
            st = os.stat(path or ".")
            key.append((st.st_mtime_ns, st.st_nlink, st.st_size, st.st_ino))
        except OSError:
            key.append(None)
    return tuple(key)


#: a change this recent (ns) may share its modification time with one still to come (file times
#: tick in steps of a few ms): the entry points are read again until the installation is older
_SETTLE_NS = 50_000_000


def _entry_points() -> tuple[int, dict[str, list[EntryPoint]]]:
    """``(generation, group -> entry points)``, read again only when :func:`_fingerprint` changed
    or the installation changed moments ago (``generation`` counts the reads)."""
    if _SCANNED["key"] is None or _fingerprint(_SCANNED["watch"]) != _SCANNED["key"]:
        before = _fingerprint(())  # a change during the read is seen by the next call
        groups: dict[str, list[EntryPoint]] = {}
        watch: set[str] = set()
        found = entry_points()  # Python < 3.12: a dict of group -> entry points; later, all of them
        for ep in ([ep for eps in dict.values(found) for ep in eps] if isinstance(found, dict) else found):
            groups.setdefault(ep.group, []).append(ep)
            if ep.group in _GROUPS:
                info = getattr(getattr(ep, "dist", None), "_path", None)  # the dist-info directory
                if info is not None:
                    watch.update((str(info), os.path.join(str(info), "entry_points.txt")))
        files = tuple(sorted(watch))
        key = before + _fingerprint(files)[len(before):]
        newest = max((k[0] for k in key[1:] if k is not None), default=0)
        settled = time.time_ns() - newest > _SETTLE_NS
        _SCANNED.update(key=key if settled else None, groups=groups, watch=files,
                        generation=_SCANNED["generation"] + 1)
    return _SCANNED["generation"], _SCANNED["groups"]


class Registry:
    """The components registered under one entry-point group."""

    def __init__(self, group: str, kind: str, config_group: str | None = None, select: str | None = None,
                 shared: Mapping[str, Any] | None = None, adapter: str | None = None):
        self.group = group          # entry-point group, e.g. "lstm_pipeline.cells"
        self.kind = kind            # human name, e.g. "cell"
        self.config_group = config_group  # Hydra config group that selects it, e.g. "model/cell"
        # how a user picks one on the command line (default: <config_group>=<name>)
        self.select = select or (f"{config_group}=<name>" if config_group else None)
        #: settings every component of the group may be given (setting -> its off value); a component
        #: that does not take one itself gets it applied by ``adapter`` ("module:function(obj, **shared)")
        self._shared = shared  # a mapping, or "module:attribute" naming one (resolved when first used)
        self.adapter = adapter
        self._scanned: tuple[int, tuple] | None = None  # (generation of _entry_points, what _scan found)
        if group not in _GROUPS:
            _GROUPS.add(group)
            _SCANNED["key"] = None  # read again, watching this group's distributions too

    # -- listing (no imports) -------------------------------------------------------
    def _scan(self) -> tuple[dict[str, Entry], dict[str, list[Entry]]]:
        """(name -> first entry, name -> every entry of a name registered by several distributions)."""
        generation, groups = _entry_points()
        if self._scanned is not None and self._scanned[0] == generation:
            return self._scanned[1]
        found: dict[str, list[Entry]] = {}
        for ep in groups.get(self.group, ()):
            entry = Entry(ep.name, ep.value, _dist_name(ep), ep, _dist_version(ep))
            same = found.setdefault(ep.name, [])
            # the same distribution seen twice on sys.path (e.g. editable + build dir): keep the first
            if all(e.distribution != entry.distribution for e in same):
                same.append(entry)
        first = {name: es[0] for name, es in sorted(found.items())}
        result = first, {name: es for name, es in sorted(found.items()) if len(es) > 1}
        self._scanned = (generation, result)
        return result

    def entries(self) -> dict[str, Entry]:
        """Every registered name (a name two distributions register is listed once; selecting it is
        the error, see :meth:`duplicates`). Never raises and imports nothing."""
        return dict(self._scan()[0])

    def duplicates(self) -> dict[str, list[Entry]]:
        """The names registered by more than one distribution, with every registration."""
        return dict(self._scan()[1])

    def duplicate_error(self, name: str, entries: Sequence[Entry]) -> DuplicateComponentError:
        which = " and ".join(f"'{e.distribution}' ({e.value})" for e in entries)
        return DuplicateComponentError(
            f"{self.kind} '{name}' (entry-point group '{self.group}') is registered by {len(entries)} "
            f"distributions: {which}. Uninstall all but one of them (pip uninstall <distribution>) or "
            f"rename the entry point in one; the other {self.kind}s are not affected.")

    def names(self) -> list[str]:
        return list(self.entries())

    def __contains__(self, name: str) -> bool:
        return name in self.entries()

    # -- loading ----------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        """The registration of ``name``. Raises :class:`UnknownComponentError` (listing the available
        names, or naming the distribution to install where the run in use recorded one) or
        :class:`DuplicateComponentError` (two distributions register ``name``)."""
        entries, dups = self._scan()
        if name in dups:
            raise self.duplicate_error(name, dups[name])
        if name not in entries:
            available = ", ".join(entries) or "(none installed)"
            record = _EXPECTED.get((self.group, str(name)))
            if record is not None:
                raise UnknownComponentError(
                    f"{self.kind} '{name}' is not installed. {record.get('source') or 'The run'} was made with "
                    f"{self.kind} '{name}' from the distribution '{record.get('distribution')}'"
                    f"{' ' + str(record['version']) if record.get('version') else ''}: install it with "
                    f"{install_hint(record)}. Installed {self.kind}s: {available}.")
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

    @property
    def shared(self) -> dict[str, Any]:
        """Settings every component of the group may be given: setting -> its off value."""
        if isinstance(self._shared, str):
            module, _, attr = self._shared.partition(":")
            self._shared = dict(getattr(__import__(module, fromlist=[attr]), attr))
        return dict(self._shared or {})

    def split_shared(self, factory: Any, settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(settings ``factory`` takes itself, shared settings it does not take, off values dropped)."""
        own, shared = dict(settings), {}
        if self._shared is None or not any(key in own for key in self.shared):
            return own, shared
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            return own, shared
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return own, shared
        for key, off in self.shared.items():
            if key in own and key not in params:
                value = own.pop(key)
                if value != off and value is not None and value != []:
                    shared[key] = value
        return own, shared

    def validate(self, name: str, settings: Mapping[str, Any], what: str | None = None, **runtime: Any) -> None:
        """Check ``settings`` (a config node without ``name``) against component ``name``'s signature,
        the group's shared settings allowed; raise :class:`ConfigError` naming the bad key."""
        self._check(self.get(name), settings, what or f"{self.kind} '{name}'", runtime)

    def _check(self, factory: Any, settings: Mapping[str, Any], what: str, runtime: Mapping[str, Any]) -> dict:
        own, shared = self.split_shared(factory, settings)
        if self._shared is not None:  # a misspelt shared setting: suggest among the component's and the shared ones
            try:
                params = inspect.signature(factory).parameters
            except (TypeError, ValueError):
                params = None
            if params is not None and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
                check_settings(own, accepted + [k for k in self.shared if k not in accepted], what)
        validate_kwargs(factory, {**own, **runtime}, what, self.config_group)
        return shared

    def build(self, cfg: Mapping[str, Any], **runtime: Any) -> Any:
        """Build the component named by ``cfg['name']`` with the remaining fields as keyword
        arguments (plus ``runtime`` ones). Fields the component does not accept are an error, except
        the group's shared settings, which the group's adapter applies for it."""
        cfg = dict(cfg)
        if "name" not in cfg:
            raise RegistryError(f"The {self.kind} config has no 'name' field: {cfg}")
        name = cfg.pop("name")
        factory = self.get(name)
        shared = self._check(factory, cfg, f"{self.kind} '{name}'", runtime)
        own, _ = self.split_shared(factory, cfg)
        obj = factory(**own, **runtime)
        if shared and self.adapter:
            module, _, attr = self.adapter.partition(":")
            obj = getattr(__import__(module, fromlist=[attr]), attr)(obj, **shared)
        return obj


def _top_package(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or (obj.__name__ if isinstance(obj, ModuleType) else "")
    return (module or "").split(".")[0]


def declared_api(obj: Any) -> str | None:
    """The plugin API ``obj`` (a class, a factory function) says it was written for, found the same
    way for every group: a ``lstm_pipeline_api`` attribute set by ``obj`` or by a base class from
    ``obj``'s own top-level package (the one lstm-pipeline's base classes carry is not the plugin's
    declaration), else the ``LSTM_PIPELINE_API`` constant of its module or of one of that module's
    parent packages. None when nothing declares it."""
    own = _top_package(obj)
    for klass in (inspect.getmro(obj) if isinstance(obj, type) else (obj,)):
        if klass is object or _top_package(klass) != own:
            continue
        wanted = klass.__dict__.get("lstm_pipeline_api") if isinstance(klass, type) \
            else getattr(klass, "lstm_pipeline_api", None)
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
        obj = entry.load()
    except Exception as exc:
        return EntryStatus(entry, False, None, f"failed to import: {type(exc).__name__}: {exc}")
    try:
        check_api(obj, f"{registry.kind} '{entry.name}' from '{entry.distribution}'")
    except RegistryError as exc:
        return EntryStatus(entry, False, None, str(exc))
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
#: the data.* settings every data source may be given, with their off values (a source that does not
#: take one itself gets it applied by lstm_pipeline.data.sources.with_shared_options)
SHARED_DATA_SETTINGS: dict[str, Any] = {"eos_token": None, "document_separator": None, "min_length": 0,
                                        "streaming": False, "cache_dir": None}
DATA_SOURCES = Registry("lstm_pipeline.data_sources", "data source", "data", shared=SHARED_DATA_SETTINGS,
                        adapter="lstm_pipeline.data.sources:with_shared_options")
TOKENIZERS = Registry("lstm_pipeline.tokenizers", "tokenizer", "tokenizer")
CELLS = Registry("lstm_pipeline.cells", "cell", "model/cell")
#: every decoder takes the constraint settings (repetition_penalty, ...: strategies.COMMON); one whose own
#: __init__ does not (it does not pass them on to DecodingStrategy.__init__) gets them from the adapter
DECODERS = Registry("lstm_pipeline.decoders", "decoder", "decoding", shared="lstm_pipeline.generation.strategies:COMMON",
                    adapter="lstm_pipeline.registry:decoder_with_shared_settings")
LOGITS_PROCESSORS = Registry("lstm_pipeline.logits_processors", "logits processor")
CALLBACKS = Registry("lstm_pipeline.callbacks", "callback", "callbacks",  # the group's options are files
                     select="+callbacks.<key>={name:<name>} or a file under conf/callbacks/ (callbacks=<file>)")
CONF = Registry("lstm_pipeline.conf", "config package")

ALL: tuple[Registry, ...] = (DATA_SOURCES, TOKENIZERS, CELLS, DECODERS, LOGITS_PROCESSORS, CALLBACKS, CONF)


def decoder_with_shared_settings(decoder: Any, **shared: Any) -> Any:
    """The ``DECODERS`` adapter: a decoder whose own ``__init__`` does not take the settings every
    strategy takes (and so never passes them to ``DecodingStrategy.__init__``) gets them in its
    ``settings``, from which ``StepDecoding.generate`` builds its logits processors; they are
    checked now. A decoder with its own ``generate`` must call ``self.processors()`` to apply them."""
    decoder.settings = {**(getattr(decoder, "settings", None) or {}), **shared}
    processors = getattr(decoder, "processors", None)
    if callable(processors):
        processors()  # validates the values (ValueError naming the setting)
    return decoder


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


# Provenance: the distribution that provided each component of a run ------------------------
#: the file in a run directory that records it (the exported model's config.json may hold the same
#: mapping under the key "components")
PROVENANCE_FILE = "components.json"

_BY_CONFIG_GROUP = {r.config_group: r for r in ALL if r.config_group}


def _registry_of(group: str) -> Registry:
    for r in ALL:
        if group in (r.group, r.config_group, r.kind, r.group.split(".", 1)[-1]):
            return r
    raise RegistryError(f"Unknown component group {group!r}: one of {', '.join(r.group for r in ALL)}.")


def provenance(group: str, name: str) -> dict[str, Any] | None:
    """Which installed distribution provides component ``name`` of ``group`` (an entry-point group
    such as ``"lstm_pipeline.cells"``, its short form ``"cells"``, or a config group such as
    ``"model/cell"``): ``{"group", "name", "distribution", "version"}``, or None when no installed
    distribution registers it. Imports nothing."""
    reg = _registry_of(group)
    entry = reg.entries().get(str(name))
    if entry is None:
        return None
    return {"group": reg.group, "name": entry.name, "distribution": entry.distribution, "version": entry.version}


def run_components(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The provenance of every component a train config selects (data, tokenizer, model.cell,
    callbacks, the sample's decoding), keyed by where the config names it (``"model.cell"``,
    ``"callbacks.<key>"``)."""
    def node(path: str):
        cur: Any = cfg
        for part in path.split("."):
            cur = cur.get(part) if hasattr(cur, "get") else None
            if cur is None:
                return None
        return cur

    wanted: list[tuple[str, Registry, Any]] = [
        ("data", DATA_SOURCES, node("data.name")), ("tokenizer", TOKENIZERS, node("tokenizer.name")),
        ("model.cell", CELLS, node("model.cell.name")), ("sample.decoding", DECODERS, node("sample.decoding.name"))]
    callbacks = node("callbacks")
    if hasattr(callbacks, "items"):
        for key, cb in callbacks.items():
            if hasattr(cb, "get") and cb.get("name") and "_target_" not in cb:
                wanted.append((f"callbacks.{key}", CALLBACKS, cb.get("name")))
    out: dict[str, dict[str, Any]] = {}
    for where, reg, name in wanted:
        if name is not None:
            out[where] = provenance(reg.group, str(name)) or {"group": reg.group, "name": str(name),
                                                               "distribution": None, "version": None}
    return out


def write_provenance(run_dir: str | Path, cfg: Mapping[str, Any]) -> Path:
    """Write :func:`run_components` of ``cfg`` to ``<run_dir>/components.json``; return its path."""
    path = Path(run_dir) / PROVENANCE_FILE
    path.write_text(json.dumps(run_components(cfg), indent=2) + "\n")
    return path


def read_provenance(path: str | Path) -> dict[str, dict[str, Any]]:
    """The components recorded for a run directory, a model directory inside one, or an exported
    model (``components.json`` there or one level up, else ``config.json``'s ``"components"``);
    {} where none is recorded."""
    p = Path(str(path)).expanduser()
    if p.is_file():
        p = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    for candidate in (p / PROVENANCE_FILE, p.parent / PROVENANCE_FILE):
        if candidate.is_file():
            try:
                return dict(json.loads(candidate.read_text()))
            except (ValueError, TypeError):
                return {}
    config = p / "config.json"
    if config.is_file():
        try:
            return dict(json.loads(config.read_text()).get("components") or {})
        except (ValueError, TypeError, AttributeError):
            return {}
    return {}


def expect_components(records: Mapping[str, Mapping[str, Any]], source: str = "The run") -> None:
    """Remember the components a run was made with, so that an unknown one later says which
    distribution to install instead of suggesting a similar name."""
    for rec in records.values():
        if rec.get("distribution") and rec.get("group") and rec.get("name"):
            _EXPECTED[(rec["group"], rec["name"])] = {**rec, "source": source}


def missing_components(records: Mapping[str, Mapping[str, Any]], source: str = "The run") -> list[str]:
    """One message per distribution that provided recorded components and is no longer installed
    (one of its components is not registered any more): which components, and what to install.
    Components recorded without a distribution are skipped."""
    missing: dict[tuple[str, str | None], list[str]] = {}
    for where, rec in records.items():
        try:
            reg = _registry_of(str(rec.get("group")))
        except RegistryError:
            continue
        if rec.get("name") in reg.entries() or not rec.get("distribution"):
            continue
        missing.setdefault((rec["distribution"], rec.get("version")), []).append(f"{reg.kind} '{rec['name']}' ({where})")
    out = []
    for (dist, version), what in missing.items():
        listed = what[0] if len(what) == 1 else ", ".join(what[:-1]) + " and " + what[-1]
        out.append(f"{source} was made with {listed} from the distribution '{dist}'{' ' + version if version else ''}, "
                   f"which is not installed: {install_hint({'distribution': dist, 'version': version})}.")
    return out
