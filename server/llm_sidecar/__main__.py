"""`python -m llm_sidecar`: run the sidecar until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

from pydantic import ValidationError

from llm_sidecar.app import Sidecar
from llm_sidecar.config import ServerSettings, Settings, load_settings
from llm_sidecar.telemetry.logs import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llm-sidecar", description=__doc__)
    parser.add_argument("--config", help="TOML or JSON configuration file (or LLM_SIDECAR_CONFIG)")
    parser.add_argument("--host", help="override server.host")
    parser.add_argument(
        "--port", type=int, help="override server.port (0: any free port, -1: no TCP)"
    )
    parser.add_argument("--unix-socket", help="override server.unix_socket")
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


async def serve(settings: Settings) -> None:
    """Run until a termination signal, then drain and stop."""
    sidecar = Sidecar(settings)
    await sidecar.start()
    tune_gc()
    print(f"llm-sidecar listening on {', '.join(sidecar.addresses)}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sidecar.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_overrides = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.port),
            ("unix_socket", args.unix_socket),
        )
        if value is not None
    }
    try:
        settings = load_settings(args.config)
        if server_overrides:
            # Validated like the file: an override can make a listener non-loopback.
            server = ServerSettings(**{**settings.server.model_dump(), **server_overrides})
            settings = settings.model_copy(update={"server": server})
    except (ValidationError, ValueError, OSError) as exc:
        print(f"llm-sidecar: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.telemetry.log_level, settings.telemetry.log_format)
    if settings.server.uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
