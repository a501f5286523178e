"""Structured JSON logs carrying trace and span ids.

Log calls in this project pass ids, counts and error classes as ``extra``
fields, never prompt or response text; this formatter writes them out. Other
libraries' records are stripped of their arguments and tracebacks, which can
quote metadata values or content a caller sent.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from contextvars import ContextVar, Token

from opentelemetry import trace

from llm_sidecar.config import TelemetrySettings

#: The request id of the call the current task serves, set by each wire's entrance.
_REQUEST_ID: ContextVar[str | None] = ContextVar("llm_sidecar_request_id", default=None)


def bind_request_id(request_id: str) -> Token[str | None]:
    """Name the call this task serves in every record it logs from now on (until the
    token is reset), so a debug line finds its access line."""
    return _REQUEST_ID.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    """Undo :func:`bind_request_id` (a connection's task may serve another request)."""
    _REQUEST_ID.reset(token)


def _with_request_id(record: logging.LogRecord) -> bool:
    """A handler filter: the current call's request id on records that lack one."""
    if not hasattr(record, "request_id") and (request_id := _REQUEST_ID.get()) is not None:
        record.request_id = request_id
    return True


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line per record for people: the message, then the record's fields as
    ``key=value`` (ids, counts and error classes only, as in the JSON form)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        return f"{line} {' '.join(fields)}" if fields else line


def configure_logging(settings: TelemetrySettings) -> None:
    """Send the process's logs to stderr in the chosen format: the sidecar's own at
    ``log_level``, every library's (grpc, aiohttp, OpenTelemetry, redis) at
    ``library_log_level``, so turning the sidecar's level to debug shows its own
    records, not a flood of grpc internals."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    # Every library's records, not only the known ones, lose arguments and tracebacks.
    handler.addFilter(_FILTER)
    handler.addFilter(_with_request_id)
    withhold_library_log_arguments()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.library_log_level.upper())
    logging.getLogger(_OWN).setLevel(settings.log_level.upper())


#: Library loggers known to quote what a caller sent: grpcio logs "Invalid
#: encoding on <raw bytes>" for a non-UTF-8 metadata value, OpenTelemetry's
#: propagators log a malformed ``baggage`` or ``traceparent`` value whole.
QUOTING_LOGGERS = (
    "grpc",
    "grpc._cython.cygrpc",
    "grpc._server",
    "grpc._channel",
    "grpc._common",
    "grpc._plugin_wrapping",
    "grpc.aio",
    "grpc.aio._server",
    "grpc.aio._call",
    "grpc.aio._channel",
    "grpc_health.v1.health",
    "grpc_reflection.v1alpha.reflection",
    "opentelemetry.baggage.propagation",
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.propagate",
    "opentelemetry.propagators.textmap",
    "mcp.client.streamable_http",
    "mcp.client.session",
    "mcp.server.streamable_http",
    "mcp.server.streamable_http_manager",
    "mcp.server.lowlevel.server",
    "mcp.shared.jsonrpc_dispatcher",
)
_WITHHELD = "<withheld>"
_OWN = "llm_sidecar"
#: Library loggers whose arguments are an operator's own settings and a collector's
#: answers, never a caller's data: the OTLP exporters name the endpoint and the error.
_TRUSTED = ("opentelemetry.exporter.otlp",)


class WithholdArguments(logging.Filter):
    """Keeps a library record's level and message template; withholds its arguments
    and traceback, naming only the exception's type.

    The sidecar's own records (``llm_sidecar.*``) pass untouched: they carry ids,
    counts and error classes in ``extra`` fields by construction.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(_OWN) or getattr(record, "_withheld", False):
            return True
        record._withheld = True
        if record.name == "mcp" or record.name.startswith("mcp."):
            # The MCP SDK formats values into its messages (f-strings), tool data among
            # them: only where the record comes from is kept.
            record.msg = f"MCP SDK record from {record.funcName} (message withheld)"
            record.args = ()
        if record.args and not record.name.startswith(_TRUSTED):
            count = len(record.args) if isinstance(record.args, tuple) else 1
            try:
                record.msg = str(record.msg) % ((_WITHHELD,) * count)
            except (TypeError, ValueError, KeyError):
                record.msg = f"{record.msg} (arguments withheld)"
            record.args = ()
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.msg} [{record.exc_info[0].__name__}; traceback withheld]"
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_FILTER = WithholdArguments()


def withhold_library_log_arguments() -> None:
    """Install the filter on the libraries' loggers that quote input (idempotent).

    A logger's filters see its records before any handler does, caplog's
    included; :func:`configure_logging` adds it to the process's handler too,
    for every other library.
    """
    for name in QUOTING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def frames_only(exc: BaseException) -> str:
    """A traceback without the exception's message: type and frames only."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(
        f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in frames[::-1]
    )
    return f"{type(exc).__name__} at {where}"
