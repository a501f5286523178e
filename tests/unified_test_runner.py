#!/usr/bin/env python3
"""One entry point for the test suite, mapping familiar flags onto pytest.

    python tests/unified_test_runner.py                          # everything
    python tests/unified_test_runner.py --category integration -v
    python tests/unified_test_runner.py --test-file tests/unit/test_breaker.py \
        --test-method test_opens_after_threshold
    python tests/unified_test_runner.py --parallel --workers 2 --coverage --junit-xml out.xml
    python tests/unified_test_runner.py --execution-mode fast_feedback
    python tests/unified_test_runner.py --memory-profile   # RSS growth per test; fails over 75 MB
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

CATEGORIES: dict[str, list[str]] = {
    "all": [str(TESTS)],
    "unit": [str(TESTS / "unit")],
    "integration": [str(TESTS / "integration")],
    "isolation": [str(TESTS / "integration/llm_manager/test_llm_manager_multi_user_isolation.py")],
    "conversation": [
        str(TESTS / "integration/llm_manager/test_llm_conversation_context_isolation.py")
    ],
    "failover": [
        str(TESTS / "integration/llm_manager/test_llm_provider_failover_integration.py"),
        str(TESTS / "integration/llm_manager/test_llm_provider_failover_policy.py"),
        str(TESTS / "unit/test_routing_policy.py"),
    ],
    "resources": [
        str(TESTS / "integration/llm_manager/test_llm_resource_management_integration.py")
    ],
    "telemetry": [
        str(TESTS / "integration/llm_manager/test_telemetry.py"),
        str(TESTS / "integration/llm_manager/test_telemetry_export.py"),
    ],
    "redis": ["-m", "redis", str(TESTS)],
    "fuzz": [str(TESTS / "fuzz")],
    "edge": [str(TESTS / "integration/llm_manager/test_wire_edge.py"), str(TESTS / "fuzz")],
}


def build_args(ns: argparse.Namespace) -> list[str]:
    args: list[str] = []
    targets: list[str] = []
    if ns.test_file:
        target = ns.test_file
        if ns.test_method:
            target += f"::{ns.test_method}"
        targets.append(target)
    elif ns.test_path:
        targets.append(ns.test_path)
    else:
        targets.extend(CATEGORIES[ns.category])
    if ns.test_method and not ns.test_file:
        args += ["-k", ns.test_method]
    if ns.parallel:
        args += ["-n", str(ns.workers or "auto")]
    if ns.coverage:
        args += [
            "--cov=llm_sidecar",
            "--cov=llm_manager_client",
            "--cov-report=term-missing:skip-covered",
        ]
    if ns.execution_mode == "fast_feedback":
        args += ["-x", "--ff", "-m", "not slow"]
    if ns.timeout:
        args += ["--timeout", str(ns.timeout)]
    if ns.junit_xml:
        args += ["--junit-xml", ns.junit_xml]
    if ns.memory_profile:
        args.append("--memory-profile")
    if ns.fuzz_long:
        args.append("--fuzz-long")
    if ns.verbose:
        args.append("-" + "v" * ns.verbose)
    else:
        args.append("-q")
    return args + targets + ns.pytest_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--category", choices=sorted(CATEGORIES), default="all")
    parser.add_argument("--test-path", help="a directory or file under tests/")
    parser.add_argument("--test-file", help="one test file")
    parser.add_argument("--test-method", help="one test (with --test-file) or a -k expression")
    parser.add_argument(
        "--real-services",
        action="store_true",
        help="require real backing services (Redis): fail instead of starting a private one",
    )
    parser.add_argument("--parallel", action="store_true", help="run with pytest-xdist")
    parser.add_argument("--workers", type=int, default=0, help="xdist workers (default: auto)")
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--execution-mode", choices=["full", "fast_feedback"], default="full")
    parser.add_argument("--timeout", type=int, default=0, help="per-test timeout in seconds")
    parser.add_argument("--junit-xml")
    parser.add_argument("--memory-profile", action="store_true")
    parser.add_argument("--fuzz-long", action="store_true", help="the long wire fuzz profile")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest as they are (after --)")
    ns = parser.parse_args(argv)
    if ns.real_services:
        os.environ["SIDECAR_TESTS_REAL_SERVICES"] = "1"
    os.chdir(ROOT)
    import pytest

    return int(pytest.main(build_args(ns)))


if __name__ == "__main__":
    sys.exit(main())
