"""Invariants are guarded by exceptions, never by ``assert``: ``python -O`` drops asserts,
and with them the check (issue 15)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_no_module_of_the_ledger_asserts() -> None:
    found = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert found == []
