"""Structural checks of server/llm_sidecar (run by `make lint`):

* the core imports no transport, adapter or configuration (grpc, aiohttp, redis,
  llm_sidecar.config, ...), so it stays free of wire formats;
* no import cycle inside the core, between files or between folders (the vocabulary at
  the bottom, then observability, state, admission, routing, and the turn on top);
* no function in server/ is longer than 60 lines.

Imports under ``if TYPE_CHECKING:`` count too: a cycle in types is a cycle to a reader.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "server" / "llm_sidecar"
CORE = "llm_sidecar.core"
FORBIDDEN_IN_CORE = ("grpc", "aiohttp", "redis", "llm_sidecar.config", "llm_manager")
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / "server").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle reachable in ``graph`` (depth-first, each reported once)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append([*cycle, nxt])
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def long_functions(tree: ast.AST, path: Path) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    return out


def main() -> int:
    problems: list[str] = []
    modules: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        problems += long_functions(tree, path)
        name = module_name(path)
        if not name.startswith(CORE):
            continue
        imported = imports_of(tree)
        for bad in FORBIDDEN_IN_CORE:
            if any(i == bad or i.startswith(bad + ".") for i in imported):
                problems.append(f"{name} imports {bad}: the core must not")
        modules[name] = {i for i in imported if i.startswith(CORE + ".")}
    files = {m: {i for i in deps if i in modules and i != m} for m, deps in modules.items()}
    # A package's __init__ re-exporting its own modules is not a dependency between them.
    for m, deps in files.items():
        files[m] = {d for d in deps if not (m.startswith(d + ".") and d != CORE)}
    for cycle in cycles(files):
        problems.append("file cycle: " + " -> ".join(cycle))
    folders: dict[str, set[str]] = defaultdict(set)
    for m, deps in files.items():
        for d in deps:
            a, b = m.split(".")[2:3], d.split(".")[2:3]
            if a and b and a != b:
                folders[a[0]].add(b[0])
    for cycle in cycles(dict(folders)):
        problems.append("folder cycle: " + " -> ".join(cycle))
    for problem in problems:
        print(problem)
    if not problems:
        print(
            f"structure: {len(files)} core modules, no cycle between files or folders, "
            f"no forbidden import, no function over {MAX_FUNCTION_LINES} lines"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
