"""The structure check (`.ci/structure.py`, run by `make lint`) can fail: each of its
rules refuses a made-up package that breaks it, and passes the real one."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _structure() -> ModuleType:
    spec = importlib.util.spec_from_file_location("structure", ROOT / ".ci" / "structure.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


structure = _structure()


def test_the_core_may_not_import_a_wire_or_the_telemetry_sdk() -> None:
    problems = structure.forbidden(
        "llm_sidecar.core.turn.chat",
        {"opentelemetry.sdk.trace", "llm_sidecar.entrance.scope", "llm_sidecar.core.state"},
    )
    assert problems == [
        "llm_sidecar.core.turn.chat imports opentelemetry.sdk: llm_sidecar.core must not",
        "llm_sidecar.core.turn.chat imports llm_sidecar.entrance: llm_sidecar.core must not",
    ]


def test_a_wire_may_not_import_the_other_wire_or_its_library() -> None:
    assert structure.forbidden("llm_sidecar.http_api.edge", {"grpc", "llm_sidecar.transport"})
    assert structure.forbidden("llm_sidecar.entrance.scope", {"aiohttp.web"})
    assert not structure.forbidden("llm_sidecar.http_api.edge", {"aiohttp", "llm_sidecar.entrance"})


def test_an_entrance_rule_defined_by_two_wires_is_refused() -> None:
    tree = ast.parse("def new_request_id() -> str: ...\nclass Edge: ...\n")
    assert structure.defined(tree) == {"new_request_id", "Edge"}
    definitions = {
        "llm_sidecar.transport": {"new_request_id": {"transport/rpc.py"}},
        "llm_sidecar.http_api": {"new_request_id": {"http_api/edge.py"}, "Edge": {"x.py"}},
    }
    assert structure.twice_defined(definitions) == [
        "new_request_id is defined in two wires: http_api/edge.py, transport/rpc.py"
    ]


def test_cycles_between_files_and_folders_anywhere_are_refused() -> None:
    modules = {
        "llm_sidecar.service": {"llm_sidecar.http_api.edge"},
        "llm_sidecar.http_api.edge": {"llm_sidecar.service"},
        "llm_sidecar.entrance": {"llm_sidecar.entrance.scope"},  # a re-export, no cycle
        "llm_sidecar.entrance.scope": {"llm_sidecar.core.vocabulary.errors"},
    }
    problems = structure.cycle_problems(modules, 1, "package")
    assert any(p.startswith("package file cycle: llm_sidecar.http_api.edge") for p in problems)
    assert any(p.startswith("package folder cycle:") for p in problems)
    assert not any("entrance" in p for p in problems)


def test_the_real_package_passes() -> None:
    assert structure.main() == 0
