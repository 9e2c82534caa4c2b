"""Hydra search-path plugin: each installed plugin's config package joins Hydra's config groups.

Hydra imports every module under the ``hydra_plugins`` namespace at start-up (for every Hydra app
in the environment), so this module imports only the standard library and Hydra's plugin base.
For each entry point of the group ``lstm_pipeline.conf`` (value: a package holding YAML in the
same group layout as ``lstm_pipeline.conf``, e.g. ``model/cell/mogrifier.yaml``), it appends
``pkg://<that package>`` to the search path, so ``model/cell=mogrifier`` composes and
``lstm-pipeline train --help`` lists the plugin's options. Our own package is the primary config
and is skipped. A config package that cannot be found or fails to import (any exception: an
``ImportError``, an ``OSError`` ...) is skipped with a one-line warning on stderr naming its
distribution (``lstm-pipeline plugins --check`` gives the details); it then breaks no command,
``--help`` included, and no run that does not use it.
"""
from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "lstm_pipeline.conf"
PRIMARY = "lstm_pipeline.conf"


#: config packages already warned about in this process (one warning each)
_WARNED: set[str] = set()


def _distribution(ep) -> str:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"] or dist.name) if dist is not None else "<unknown distribution>"


def _usable(pkg: str, dist: str) -> bool:
    """Import the config package (a light one: YAML files and an empty __init__); on any failure
    warn once, one line naming the distribution, and report it unusable."""
    try:
        importlib.import_module(pkg)
        return True
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the command
        if pkg not in _WARNED:
            _WARNED.add(pkg)
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            print(f"lstm-pipeline: warning: skipping the configs of plugin distribution '{dist}': its config "
                  f"package '{pkg}' fails to import ({reason[:200]}). Reinstall or uninstall '{dist}'; "
                  f"`lstm-pipeline plugins --check` gives details.", file=sys.stderr)
        return False


def plugin_config_packages() -> list[str]:
    """Config packages of installed plugins that import, sorted by entry-point name, our own
    excluded (a broken one is skipped with a one-line warning naming its distribution)."""
    found: dict[str, tuple[str, str]] = {}
    for ep in entry_points(group=GROUP):
        pkg = ep.value.split(":")[0].strip()
        if pkg != PRIMARY:
            found.setdefault(ep.name, (pkg, _distribution(ep)))
    return [pkg for name in sorted(found) for pkg, dist in [found[name]] if _usable(pkg, dist)]


class LstmPipelineSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # only for lstm-pipeline's own apps (the primary config is ours); other Hydra apps untouched
        if not any(el.path in (PRIMARY, f"pkg://{PRIMARY}") for el in search_path.get_path()):
            return
        for pkg in plugin_config_packages():
            search_path.append(provider="lstm-pipeline-plugin", path=f"pkg://{pkg}")
