"""Structural checks of server/llm_sidecar (run by `make lint`):

* the core imports no wire, adapter, telemetry SDK or configuration (grpc, aiohttp,
  redis, opentelemetry.sdk, llm_sidecar.config, the entrance and the wires, ...), so
  it stays free of wire formats; the entrance imports neither wire's library;
* no import cycle in the package, between files or between folders (inside the core:
  the vocabulary at the bottom, then observability, state, admission, routing, and
  the turn on top; above it: the wires over the entrance and the service);
* no two wires define the same function or class: an entrance rule (a request id, the
  token, the identity) lives in entrance/ alone;
* no file in server/ is longer than 400 lines, and no function longer than 60.

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
FORBIDDEN_IN_CORE = (
    "grpc",
    "aiohttp",
    "redis",
    "opentelemetry.sdk",
    "llm_sidecar.config",
    "llm_manager",
    "llm_sidecar.entrance",
    "llm_sidecar.transport",
    "llm_sidecar.http_api",
    "llm_sidecar.stores",
    "llm_sidecar.providers",
    "llm_sidecar.telemetry",
    "llm_sidecar.mcp_gateway",
    "mcp",
    "mcp_types",
)
FORBIDDEN = {
    CORE: FORBIDDEN_IN_CORE,
    "llm_sidecar.entrance": ("grpc", "aiohttp", "llm_sidecar.transport", "llm_sidecar.http_api"),
    "llm_sidecar.transport": ("aiohttp", "llm_sidecar.http_api"),
    "llm_sidecar.http_api": ("grpc", "llm_sidecar.transport"),
    # The gateway's service side: MCP's SDK, never a wire's library.
    "llm_sidecar.mcp_gateway": (
        "grpc",
        "aiohttp",
        "llm_sidecar.transport",
        "llm_sidecar.http_api",
        "llm_sidecar.config",
    ),
}
#: The wires, which share their entrance rules through entrance/ and define none twice.
WIRES = ("llm_sidecar.transport", "llm_sidecar.http_api", "llm_sidecar.entrance")
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400


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


def defined(tree: ast.Module) -> set[str]:
    """The functions and classes a module defines at its top level."""
    kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    return {node.name for node in tree.body if isinstance(node, kinds)}


def forbidden(name: str, imported: set[str]) -> list[str]:
    problems = []
    for area, banned in FORBIDDEN.items():
        if name == area or name.startswith(area + "."):
            for bad in banned:
                if any(i == bad or i.startswith(bad + ".") for i in imported):
                    problems.append(f"{name} imports {bad}: {area} must not")
    return problems


def twice_defined(definitions: dict[str, dict[str, set[str]]]) -> list[str]:
    """Names two wires both define (the entrance counts as one of them)."""
    problems = []
    wires = sorted(definitions)
    for i, a in enumerate(wires):
        for b in wires[i + 1 :]:
            for name in sorted(set(definitions[a]) & set(definitions[b])):
                where = sorted(definitions[a][name] | definitions[b][name])
                problems.append(f"{name} is defined in two wires: {', '.join(where)}")
    return problems


def cycle_problems(modules: dict[str, set[str]], depth: int, kind: str) -> list[str]:
    """File cycles among ``modules``, and folder cycles at the package depth ``depth``."""
    files = {m: {i for i in deps if i in modules and i != m} for m, deps in modules.items()}
    # A package's __init__ re-exporting its own modules is not a dependency between them.
    for m, deps in files.items():
        files[m] = {d for d in deps if not m.startswith(d + ".")}
    problems = [f"{kind} file cycle: " + " -> ".join(c) for c in cycles(files)]
    folders: dict[str, set[str]] = defaultdict(set)
    for m, deps in files.items():
        for d in deps:
            a, b = m.split(".")[depth : depth + 1], d.split(".")[depth : depth + 1]
            if a and b and a != b:
                folders[a[0]].add(b[0])
    problems += [f"{kind} folder cycle: " + " -> ".join(c) for c in cycles(dict(folders))]
    return problems


def main() -> int:
    problems: list[str] = []
    modules: dict[str, set[str]] = {}
    definitions: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text, str(path))
        problems += long_functions(tree, path)
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_FILE_LINES})")
        name = module_name(path)
        imported = imports_of(tree)
        problems += forbidden(name, imported)
        modules[name] = {i for i in imported if i.startswith("llm_sidecar.")}
        for wire in WIRES:
            if name.startswith(wire + ".") or name == wire:
                for defined_name in defined(tree):
                    definitions[wire][defined_name].add(str(path.relative_to(PACKAGE)))
    problems += twice_defined(definitions)
    core = {m: deps for m, deps in modules.items() if m.startswith(CORE + ".") or m == CORE}
    problems += cycle_problems(core, 2, "core")
    problems += cycle_problems(modules, 1, "package")
    for problem in problems:
        print(problem)
    if not problems:
        print(
            f"structure: {len(modules)} modules ({len(core)} in the core), no cycle between "
            f"files or folders, no forbidden import, no entrance rule defined twice, no file "
            f"over {MAX_FILE_LINES} lines, no function over {MAX_FUNCTION_LINES} lines"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
