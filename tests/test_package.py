"""The package as a whole: its modules import each other without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import kvq

SRC = Path(kvq.__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the kvq modules it imports anywhere (top level or inside a function)."""
    modules = {_module_name(p): p for p in (SRC / "kvq").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                graph[name] |= submodules or {node.module}
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
    return graph


def test_no_import_cycles():
    graph = _import_graph()
    cycles = []

    def visit(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                cycles.append(" -> ".join([*path, start]))
            elif nxt not in path and nxt > start:  # each cycle once, from its smallest module
                visit(start, nxt, [*path, nxt])

    for module in sorted(graph):
        visit(module, module, [module])
    assert not cycles
