"""`python -m llm_sidecar`: run the sidecar until SIGTERM or SIGINT; SIGHUP reloads
what may change while it runs (the MCP gateway's access rules) from the same sources.

``python -m llm_sidecar check-config [--config FILE]`` validates the configuration
and the environment it reads, prints the effective configuration with secrets
redacted, and exits 0 (usable) or 2 (not, with every reason).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys

from pydantic import ValidationError

from llm_sidecar.app import Sidecar
from llm_sidecar.config import (
    HttpSettings,
    ServerSettings,
    Settings,
    check_environment,
    check_nested_variables,
    load_settings,
    redacted,
)
from llm_sidecar.entrance import ListenError
from llm_sidecar.telemetry.logs import configure_logging

log = logging.getLogger("llm_sidecar")

#: Exit status of a configuration the sidecar cannot run with.
BAD_CONFIGURATION = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llm-sidecar", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "check-config"),
        default="serve",
        help="serve (default), or check-config: validate and print the effective configuration",
    )
    parser.add_argument("--config", help="TOML or JSON configuration file (or LLM_SIDECAR_CONFIG)")
    parser.add_argument("--host", help="override server.host")
    parser.add_argument(
        "--port", type=int, help="override server.port (0: any free port, -1: no TCP)"
    )
    parser.add_argument("--unix-socket", help="override server.unix_socket")
    parser.add_argument(
        "--http-port",
        type=int,
        help="override http.port, the OpenAI and Anthropic APIs (0: any free port, -1: no TCP)",
    )
    return parser.parse_args(argv)


#: Young-generation collections every this many net allocations (Python's default: 700).
#: Nearly every object a call makes dies by reference count within the call, so the
#: default ran a collection every few streamed deltas for almost nothing to find.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collection for a long-running server, set once start-up is done: what start-up
    built (modules, configuration, descriptors) is frozen out of every later
    collection, and young collections run less often. The older generations keep
    their default ratios, so cycles left by evicted managers are still collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def serve(settings: Settings, args: argparse.Namespace | None = None) -> None:
    """Run until a termination signal, then drain and stop."""
    # The handlers first: a SIGTERM that arrives while the sidecar starts, or just after
    # it says it listens, still drains and stops it cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sidecar = Sidecar(settings)
    if args is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: reload(sidecar, args))
    await sidecar.start()
    tune_gc()
    listening = ", ".join(sidecar.addresses + sidecar.http_addresses)
    print(f"llm-sidecar listening on {listening}", file=sys.stderr, flush=True)
    await stop.wait()
    await sidecar.stop()


def reload(sidecar: Sidecar, args: argparse.Namespace) -> None:
    """Read the configuration again and apply what may change while running; a
    configuration with a problem is refused whole, and the one in force stays."""
    try:
        settings = settings_from(args)
    except (ValidationError, ValueError, OSError) as exc:
        log.error("reload refused: bad configuration", extra={"problem": str(exc)[:2000]})
        return
    sidecar.reload(settings)


def settings_from(args: argparse.Namespace) -> Settings:
    """The configuration the arguments, file and environment make; raises on any problem,
    the environment's included (keys unset, unknown ``LLM_SIDECAR_*`` variables)."""
    server_overrides = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.port),
            ("unix_socket", args.unix_socket),
        )
        if value is not None
    }
    check_nested_variables(dict(os.environ))
    settings = load_settings(args.config)
    if server_overrides:
        # Validated like the file: an override can make a listener non-loopback.
        server = ServerSettings(**{**settings.server.model_dump(), **server_overrides})
        settings = settings.model_copy(update={"server": server})
    if args.http_port is not None:
        http = HttpSettings(**{**settings.http.model_dump(), "port": args.http_port})
        settings = settings.model_copy(update={"http": http})
    check_environment(settings, dict(os.environ))
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from(args)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"llm-sidecar: bad configuration: {exc}", file=sys.stderr)
        return BAD_CONFIGURATION
    if args.command == "check-config":
        print(json.dumps(redacted(settings), indent=2, sort_keys=True))
        print("llm-sidecar: configuration OK", file=sys.stderr)
        return 0
    configure_logging(settings.telemetry)
    if settings.server.uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    try:
        asyncio.run(serve(settings, args))
    except ListenError as exc:
        print(f"llm-sidecar: {exc}", file=sys.stderr)
        return BAD_CONFIGURATION
    return 0


if __name__ == "__main__":
    sys.exit(main())
