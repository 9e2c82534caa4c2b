"""Hydra search-path plugin: each installed plugin's config package joins Hydra's config groups.

Hydra imports every module under the ``hydra_plugins`` namespace at start-up (for every Hydra app
in the environment), so this module imports only the standard library and Hydra's plugin base.
For each entry point of the group ``lstm_pipeline.conf`` (value: a package holding YAML in the
same group layout as ``lstm_pipeline.conf``, e.g. ``model/cell/mogrifier.yaml``), it appends
``pkg://<that package>`` to the search path, so ``model/cell=mogrifier`` composes and
``lstm-pipeline train --help`` lists the plugin's options. Our own package is the primary config
and is skipped. A config package that cannot be found is skipped here (``lstm-pipeline plugins
--check`` reports it); it then breaks no run that does not use it.
"""
from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "lstm_pipeline.conf"
PRIMARY = "lstm_pipeline.conf"


def plugin_config_packages() -> list[str]:
    """Config packages of installed plugins, sorted by entry-point name, our own excluded."""
    found: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        pkg = ep.value.split(":")[0].strip()
        if pkg != PRIMARY:
            found.setdefault(ep.name, pkg)
    return [found[name] for name in sorted(found)]


def _findable(pkg: str) -> bool:
    try:
        return importlib.util.find_spec(pkg) is not None
    except Exception:  # a parent package that fails to import: reported by `plugins --check`
        return False


class LstmPipelineSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # only for lstm-pipeline's own apps (the primary config is ours); other Hydra apps untouched
        if not any(el.path in (PRIMARY, f"pkg://{PRIMARY}") for el in search_path.get_path()):
            return
        for pkg in plugin_config_packages():
            if _findable(pkg):
                search_path.append(provider="lstm-pipeline-plugin", path=f"pkg://{pkg}")
