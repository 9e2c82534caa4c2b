"""The package's import graph has no cycles: every ``import`` of an ``lstm_pipeline`` module counts,
at module level or inside a function (a function-level import hides a cycle; it does not remove it).
docs/architecture.md gives the layers the graph follows."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "lstm_pipeline"


def module_names() -> dict[str, Path]:
    out = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _absolute(module: str | None, level: int, here: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node.module, node.level, name, path.name == "__init__.py")
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_package_has_no_import_cycle():
    found = cycles(package_graph())
    assert not found, "import cycles (each a set of modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from .generation.generator import TextGenerator\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _absolute(node.module, node.level, "lstm_pipeline.hub", False) == "lstm_pipeline.generation.generator"


@pytest.mark.parametrize("layer, forbidden", [
    ("lstm_pipeline.cells", ("lstm_pipeline.training", "lstm_pipeline.generation", "lstm_pipeline.commands",
                             "lstm_pipeline.serve", "lstm_pipeline.artifacts")),
    ("lstm_pipeline.kernels", ("lstm_pipeline.cells", "lstm_pipeline.models", "lstm_pipeline.training")),
    ("lstm_pipeline.artifacts", ("lstm_pipeline.generation", "lstm_pipeline.training", "lstm_pipeline.commands",
                                 "lstm_pipeline.serve", "lstm_pipeline.cli")),
    ("lstm_pipeline.generation", ("lstm_pipeline.training", "lstm_pipeline.commands", "lstm_pipeline.serve",
                                  "lstm_pipeline.cli")),
])
def test_a_layer_imports_nothing_above_it(layer, forbidden):
    """The must-not-import lines of docs/architecture.md."""
    bad = sorted(f"{m} -> {t}" for m, targets in package_graph().items() if m == layer or m.startswith(layer + ".")
                 for t in targets if t.startswith(forbidden))
    assert not bad, "\n".join(bad)
