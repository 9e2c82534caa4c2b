"""No function in the package is longer than 60 lines (from its ``def`` to its last line): a long
function is split into named steps (``Server.complete``, ``Engine._choose`` show how)."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "lstm_pipeline"
LIMIT = 60


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    """``"<lines>  <file>:<line>  <name>"`` for every function or method over ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{length}  {path.relative_to(root.parent)}:{node.lineno}  {node.name}")
    return found


def test_no_function_is_over_60_lines():
    assert not long_functions(SRC), "split these into named steps:\n" + "\n".join(long_functions(SRC))


def test_the_length_check_sees_a_long_method(tmp_path):
    body = "\n".join(f"        x = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"class A:\n    def f(self):\n{body}\n")
    assert [line.split()[-1] for line in long_functions(tmp_path)] == ["f"]
