"""Run benchmarks and print their tables: python -m bench [gateway ...] [--duration S]."""

from __future__ import annotations

import argparse
import importlib

BENCHES = [
    "gateway",
    "conversation",
    "failover",
    "resources",
    "tracing",
    "redis",
    "stream",
    "admission",
    "responses",
    "mcp",
    "guardrails",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        default=[],
        help=f"any of {BENCHES} or embeddings (its rows are also in gateway); default: all",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args()
    for name in args.names or BENCHES:
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError:
            print(f"\n({name}: not present)")
            continue
        print(module.run(duration=args.duration), flush=True)


if __name__ == "__main__":
    main()
