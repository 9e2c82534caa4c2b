"""``lstm-pipeline plugins new <name> --group <group>[:<component>] [--group ...] [--dir D]``: write a
plugin package skeleton.

The skeleton is a complete, installable distribution holding one or more components: a
``pyproject.toml`` with their entry points, a stub of each component with TODOs that already works
(a minimal real implementation, so the contract suite passes as generated) and writes out every
hook the plugin API lets it implement, a config file per component in the right Hydra group, a test
per component that reuses the contract suite of ``lstm_pipeline.testing``, and a README::

    lstm-pipeline plugins new sru --group cells --group decoders:top_a --group data_sources:sqlite
    pip install ./lstm-pipeline-sru
    pytest lstm-pipeline-sru/tests
    lstm-pipeline train model/cell=sru

A component is named after the package unless ``--group <group>:<component>`` names it. Names
already registered (built in or by an installed plugin) are refused.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from .. import registry
from ..registry import API_VERSION

GROUPS = ("cells", "decoders", "data_sources", "tokenizers", "callbacks", "logits_processors")

# group -> (module name, class-name suffix, config group dir or None, (registry, contract suite) or None)
LAYOUT = {
    "cells": ("cell", "Cell", "model/cell", ("CELLS", "CellContract")),
    "decoders": ("decoder", "Decoder", "decoding", ("DECODERS", "DecoderContract")),
    "data_sources": ("source", "Source", "data", ("DATA_SOURCES", "DataSourceContract")),
    "tokenizers": ("tokenizer", "Tokenizer", "tokenizer", ("TOKENIZERS", "TokenizerContract")),
    "callbacks": ("callback", "Callback", "callbacks", None),
    "logits_processors": ("processor", "Processor", None, None),
}
#: group -> the registry attribute of lstm_pipeline.registry
REGISTRY = {"cells": "CELLS", "decoders": "DECODERS", "data_sources": "DATA_SOURCES", "tokenizers": "TOKENIZERS",
            "callbacks": "CALLBACKS", "logits_processors": "LOGITS_PROCESSORS"}

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class ScaffoldError(ValueError):
    pass


# -- templates: files under templates/ ($-placeholders, string.Template) -------------------------
#   component/<group>.py.tmpl           the component's module ($cls, $name, ...)
#   config/<group>.yaml.tmpl            its config file, for the groups with a config group
#   tests/contract.py.tmpl              the test of a group with a contract suite, with the group's
#   tests/contract_hook/<group>.py.tmpl   hook that builds a component and
#   tests/contract_extra/<group>.py.tmpl  further tests
#   tests/<group>.py.tmpl               the test of a group without a contract suite
#   pyproject.toml.tmpl, README.md.tmpl the distribution's
# (``.tmpl``: never collected by pytest nor imported as modules of this package)


def template(path: str) -> Template:
    """The template at ``path`` (relative to templates/, "/"-separated) of this package's data.
    Raises FileNotFoundError for a template that is not there (a broken install)."""
    return Template(resources.files(__package__).joinpath("templates/" + path).read_text(encoding="utf-8"))


USAGE = {
    "cells": "lstm-pipeline train model/cell=$name",
    "decoders": "lstm-pipeline generate run=<run dir> decoding=$name",
    "data_sources": "lstm-pipeline train data=$name data.path=corpus.txt",
    "tokenizers": "lstm-pipeline train tokenizer=$name",
    "callbacks": "lstm-pipeline train callbacks=$name",
    "logits_processors": "# a processor for decoders: LOGITS_PROCESSORS.get(\"$name\")(banned_ids=[...])",
}

KIND = {"cells": "cell", "decoders": "decoder", "data_sources": "data source", "tokenizers": "tokenizer",
        "callbacks": "callback", "logits_processors": "logits processor"}


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_.]+", text) if p)


def names_for(name: str) -> dict[str, str]:
    """The names of a package: its distribution (``lstm-pipeline-<name>``, normalised as pip does:
    lowercase, ``-`` between words), import package (``lstm_pipeline_<name>``), default component
    name (``<name>`` with ``_`` between words) and CamelCase stem."""
    if not _NAME.match(name or ""):
        raise ScaffoldError(f"Plugin name {name!r} must start with a lowercase letter and hold only lowercase "
                            f"letters, digits, '-' and '_' (e.g. 'peephole' or 'my-cell').")
    base = re.sub(r"^lstm[-_]pipeline[-_]", "", name)
    words = [w for w in re.split(r"[-_]+", base) if w]
    if not words or base == name and name in ("lstm-pipeline", "lstm_pipeline"):
        raise ScaffoldError("Give the plugin a name after 'lstm-pipeline-'.")
    return {"dist": "lstm-pipeline-" + "-".join(words), "pkg": "lstm_pipeline_" + "_".join(words),
            "name": "_".join(words), "camel": _camel(base)}


def class_name(component: str, group: str) -> str:
    """CamelCase class name of ``component``, ending in the group's word once (``my_cell`` ->
    ``MyCell``, ``sru`` -> ``SruCell``, ``ebook_sources`` -> ``EbookSource``)."""
    suffix = LAYOUT[group][1]
    camel = _camel(component)
    if camel.lower().endswith(suffix.lower()):
        return camel[: len(camel) - len(suffix)] + suffix
    if camel.lower().endswith(suffix.lower() + "s"):
        return camel[: len(camel) - len(suffix) - 1] + suffix
    return camel + suffix


@dataclass(frozen=True)
class Component:
    group: str
    name: str      # entry-point name (what a config selects)
    cls: str
    module: str    # module in the package


def components_for(name: str, groups) -> list[Component]:
    """The components of a package: ``groups`` holds ``"<group>"`` (a component named after the
    package) or ``"<group>:<component name>"`` items."""
    if isinstance(groups, str):
        groups = [groups]
    if not groups:
        raise ScaffoldError(f"Give at least one --group: {', '.join(GROUPS)}.")
    n = names_for(name)
    specs = []
    for item in groups:
        group, _, comp = str(item).partition(":")
        if group not in GROUPS:
            raise ScaffoldError(f"Unknown group {group!r}. Groups: {', '.join(GROUPS)}.")
        comp = comp or n["name"]
        if not re.match(r"^[a-z][a-z0-9_-]*$", comp):
            raise ScaffoldError(f"Component name {comp!r} (--group {item}) must start with a lowercase letter and "
                                f"hold only lowercase letters, digits, '-' and '_'.")
        specs.append((group, comp.replace("-", "_")))
    if len(set(specs)) != len(specs):
        dup = next(x for x in specs if specs.count(x) > 1)
        raise ScaffoldError(f"The {KIND[dup[0]]} '{dup[1]}' is given twice.")
    out, classes = [], set()
    for group, comp in specs:
        module = LAYOUT[group][0]
        if sum(g == group for g, _ in specs) > 1:
            module = f"{module}_{comp}"
        cls = class_name(comp, group)
        if cls in classes:
            raise ScaffoldError(f"Two components would both be the class {cls}: name one of them differently.")
        classes.add(cls)
        out.append(Component(group, comp, cls, module))
    return out


def check_names_free(components) -> None:
    """Refuse a component whose name is already registered in its group (by lstm-pipeline or an
    installed plugin), or whose config file would clash with one of that config group's files."""
    for c in components:
        reg = getattr(registry, REGISTRY[c.group])
        entries = reg.entries()
        if c.name in entries:
            raise ScaffoldError(
                f"The {KIND[c.group]} '{c.name}' is already registered by the distribution "
                f"'{entries[c.name].distribution}': two distributions registering one name make it unusable. "
                f"Choose another name (e.g. --group {c.group}:my_{c.name}).")
        config_dir = LAYOUT[c.group][2]
        if config_dir and c.name in registry.config_options(config_dir):
            raise ScaffoldError(
                f"The config group '{config_dir}' already has a file '{c.name}.yaml' (lstm-pipeline or an installed "
                f"plugin): choose another name for the {KIND[c.group]} (e.g. --group {c.group}:my_{c.name}).")


def render(name: str, groups) -> dict[str, str]:
    """The files of the skeleton: relative path -> text. ``groups``: a group, or a list of
    ``"<group>"`` / ``"<group>:<component name>"``."""
    n = names_for(name)
    comps = components_for(name, groups)
    files: dict[str, str] = {}
    eps: dict[str, list[str]] = {}
    has_config = False
    usage, listing = [], []
    for c in comps:
        config_dir = LAYOUT[c.group][2]
        contract = LAYOUT[c.group][3]
        values = dict(n, name=c.name, cls=c.cls, module=c.module, group=c.group, api=API_VERSION)
        eps.setdefault(c.group, []).append(f'{c.name} = "{n["pkg"]}.{c.module}:{c.cls}"')
        files[f"src/{n['pkg']}/{c.module}.py"] = template(f"component/{c.group}.py.tmpl").substitute(values)
        test_path = f"tests/test_{c.name}_{LAYOUT[c.group][0]}.py"
        if contract:
            files[test_path] = template("tests/contract.py.tmpl").substitute(
                values, registry=contract[0], contract=contract[1],
                hook=template(f"tests/contract_hook/{c.group}.py.tmpl").substitute(values),
                extra=template(f"tests/contract_extra/{c.group}.py.tmpl").substitute(values))
        else:
            files[test_path] = template(f"tests/{c.group}.py.tmpl").substitute(values)
        if config_dir:
            has_config = True
            files[f"src/{n['pkg']}/conf/{config_dir}/{c.name}.yaml"] = \
                template(f"config/{c.group}.yaml.tmpl").substitute(values)
        usage.append(Template(USAGE[c.group]).substitute(values))
        listing.append(f"* `{c.cls}`: a {KIND[c.group]}, entry point `lstm_pipeline.{c.group}:{c.name}`")
    entry_points = "".join(f'\n[project.entry-points."lstm_pipeline.{g}"]\n' + "\n".join(lines) + "\n"
                           for g, lines in eps.items())
    if has_config:
        entry_points += f'\n[project.entry-points."lstm_pipeline.conf"]\n{n["dist"]} = "{n["pkg"]}.conf"\n'
        files[f"src/{n['pkg']}/conf/__init__.py"] = ""
    summary = ", ".join(c.cls for c in comps)
    values = dict(n, api=API_VERSION, summary=summary, entry_points=entry_points,
                  components="\n".join(listing), usage="\n".join(usage))
    files["pyproject.toml"] = template("pyproject.toml.tmpl").substitute(values)
    files["README.md"] = template("README.md.tmpl").substitute(values)
    files[f"src/{n['pkg']}/__init__.py"] = (
        f'"""{summary}: components for lstm-pipeline. Keep this module light (the config package under it\n'
        f'is imported by every lstm-pipeline command)."""\n\n#: the lstm-pipeline plugin API this package is '
        f'written for\nLSTM_PIPELINE_API = "{API_VERSION}"\n')
    return dict(sorted(files.items()))


def write(name: str, groups, directory: str | Path = ".") -> Path:
    """Write the package into ``directory``/<distribution name>; return that folder. Raises
    :class:`ScaffoldError` for bad or already registered names and an existing folder."""
    files = render(name, groups)
    check_names_free(components_for(name, groups))
    root = Path(directory) / names_for(name)["dist"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists: choose another name or --dir, or remove it first.")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lstm-pipeline plugins new",
        description="Write a plugin package skeleton (one or more components) that installs and passes its tests "
                    "as generated.",
        epilog="Example: lstm-pipeline plugins new sru --group cells --group decoders:top_a "
               "--group data_sources:sqlite")
    parser.add_argument("name", help="package name, e.g. 'sru' (the distribution is lstm-pipeline-sru, the "
                                     "import package lstm_pipeline_sru)")
    parser.add_argument("--group", required=True, action="append", metavar="GROUP[:COMPONENT]",
                        help=f"add a component to this extension point, one of {', '.join(GROUPS)}; named "
                             f"after the package unless ':<component name>' follows (repeatable)")
    parser.add_argument("--dir", default=".", help="where to create the package directory (default: here)")
    ns = parser.parse_args(args)
    for item in ns.group:
        if item.partition(":")[0] not in GROUPS:
            parser.error(f"argument --group: invalid choice: '{item.partition(':')[0]}' (choose from "
                         f"{', '.join(GROUPS)})")
    try:
        root = write(ns.name, ns.group, ns.dir)
    except ScaffoldError as exc:
        print(f"lstm-pipeline plugins new: error: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {root}:")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(root)}")
    print(f"\nNext:\n  pip install -e {root}\n  pytest {root / 'tests'}")
    return 0
