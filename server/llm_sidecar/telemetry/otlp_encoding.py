"""OTLP trace encoding written straight to protobuf wire format.

Why: the SDK's encoder builds a protobuf object for every span, attribute and
value from Python, measured at about 70 us per span on the reference machine,
paid on a thread that shares the GIL with the event loop serving RPCs. Writing
the bytes directly costs a fraction of that; the result is parsed once by the
C protobuf runtime into the request message the SDK's exporter sends. The
output is checked field for field against the SDK's own encoder in the tests.

Wire format reference: opentelemetry/proto/trace/v1/trace.proto and
common/v1/common.proto (field numbers below).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

# Span.flags: the context-has-is-remote bit, plus is-remote when it is.
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


_SMALL = [bytes((i,)) for i in range(128)]


def _len(field_tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return field_tag + (_SMALL[size] if size < 128 else _varint(size)) + payload


# Tags, precomputed.
_ANY_STRING, _ANY_BOOL, _ANY_INT = _tag(1, _LEN), _tag(2, _VARINT), _tag(3, _VARINT)
_ANY_DOUBLE, _ANY_ARRAY, _ANY_KVLIST, _ANY_BYTES = (
    _tag(4, _FIXED64),
    _tag(5, _LEN),
    _tag(6, _LEN),
    _tag(7, _LEN),
)
_KV_KEY, _KV_VALUE, _LIST_VALUES = _tag(1, _LEN), _tag(2, _LEN), _tag(1, _LEN)
_SPAN_TRACE_ID, _SPAN_SPAN_ID, _SPAN_TRACE_STATE, _SPAN_PARENT = (
    _tag(1, _LEN),
    _tag(2, _LEN),
    _tag(3, _LEN),
    _tag(4, _LEN),
)
_SPAN_NAME, _SPAN_KIND, _SPAN_START, _SPAN_END = (
    _tag(5, _LEN),
    _tag(6, _VARINT),
    _tag(7, _FIXED64),
    _tag(8, _FIXED64),
)
_SPAN_ATTR, _SPAN_DROPPED_ATTR, _SPAN_EVENT, _SPAN_DROPPED_EVENTS = (
    _tag(9, _LEN),
    _tag(10, _VARINT),
    _tag(11, _LEN),
    _tag(12, _VARINT),
)
_SPAN_LINK, _SPAN_DROPPED_LINKS, _SPAN_STATUS, _SPAN_FLAGS = (
    _tag(13, _LEN),
    _tag(14, _VARINT),
    _tag(15, _LEN),
    _tag(16, _FIXED32),
)
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTR, _EVENT_DROPPED = (
    _tag(1, _FIXED64),
    _tag(2, _LEN),
    _tag(3, _LEN),
    _tag(4, _VARINT),
)
_LINK_TRACE_ID, _LINK_SPAN_ID, _LINK_TRACE_STATE, _LINK_ATTR, _LINK_DROPPED, _LINK_FLAGS = (
    _tag(1, _LEN),
    _tag(2, _LEN),
    _tag(3, _LEN),
    _tag(4, _LEN),
    _tag(5, _VARINT),
    _tag(6, _FIXED32),
)
_STATUS_MESSAGE, _STATUS_CODE = _tag(2, _LEN), _tag(3, _VARINT)
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTR = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_RESOURCE_ATTR = _tag(1, _LEN)
_RS_RESOURCE, _RS_SCOPE_SPANS, _RS_SCHEMA = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_SS_SCOPE, _SS_SPANS, _SS_SCHEMA = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_REQUEST_RESOURCE_SPANS = _tag(1, _LEN)

# Most attributes repeat on every span with the same value (operation, provider,
# model, rpc method), so whole encoded key/value fields are kept. Unique values
# (response ids) pass through it too; the cache is simply emptied when full.
_PAIR_CACHE_LIMIT = 4096
_pair_cache: dict[tuple[bytes, str, type, Any], bytes] = {}
# Only these value types are cached; the type is part of the key because
# True == 1 == 1.0 in Python, while they encode differently.
_CACHED_TYPES = frozenset({str, bool})


def _key(key: str) -> bytes:
    return _len(_KV_KEY, key.encode("utf-8"))


def _any(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        return _len(_ANY_STRING, value.encode("utf-8"))
    if kind is bool:
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if kind is int:
        return _ANY_INT + _varint(value)
    if kind is float:
        return _ANY_DOUBLE + _pack_double(value)
    # Subclasses (StrEnum, IntEnum, ...) encode as their base type, as in the
    # SDK; str before Sequence, because a str is one. (bool has no subclasses.)
    if isinstance(value, str):
        return _len(_ANY_STRING, value.encode("utf-8"))
    if isinstance(value, int):
        return _ANY_INT + _varint(int(value))
    if isinstance(value, float):
        return _ANY_DOUBLE + _pack_double(float(value))
    if isinstance(value, bytes):
        return _len(_ANY_BYTES, value)
    if isinstance(value, Mapping):
        return _len(_ANY_KVLIST, b"".join(_len(_LIST_VALUES, _kv(k, v)) for k, v in value.items()))
    if isinstance(value, Sequence):
        return _len(_ANY_ARRAY, b"".join(_len(_LIST_VALUES, _any(v)) for v in value))
    return b""  # None and unknown types: an empty AnyValue, as the SDK writes


def _kv(key: str, value: Any) -> bytes:
    return _key(key) + _len(_KV_VALUE, _any(value))


def _attributes(field_tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    cache = _pair_cache
    out = []
    for key, value in attributes.items():
        kind = type(value)
        if kind not in _CACHED_TYPES:
            out.append(_len(field_tag, _kv(key, value)))
            continue
        slot = (field_tag, key, kind, value)
        encoded = cache.get(slot)
        if encoded is None:
            encoded = _len(field_tag, _kv(key, value))
            if len(cache) >= _PAIR_CACHE_LIMIT:
                cache.clear()
            cache[slot] = encoded
        out.append(encoded)
    return b"".join(out)


def _flags(parent: SpanContext | None) -> int:
    if parent is not None and parent.is_remote:
        return _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE
    return _FLAGS_HAS_IS_REMOTE


def _trace_state(ctx: SpanContext) -> bytes:
    state = ctx.trace_state
    if not state:
        return b""
    return ",".join(f"{k}={v}" for k, v in state.items()).encode("utf-8")


def _uint(field_tag: bytes, value: int) -> bytes:
    return field_tag + _varint(value) if value else b""


def encode_span(span: ReadableSpan) -> bytes:
    """One ``opentelemetry.proto.trace.v1.Span``."""
    ctx = span.get_span_context()
    assert ctx is not None
    parts = [
        _len(_SPAN_TRACE_ID, ctx.trace_id.to_bytes(16, "big")),
        _len(_SPAN_SPAN_ID, ctx.span_id.to_bytes(8, "big")),
    ]
    state = _trace_state(ctx)
    if state:
        parts.append(_len(_SPAN_TRACE_STATE, state))
    parent = span.parent
    if parent is not None:
        parts.append(_len(_SPAN_PARENT, parent.span_id.to_bytes(8, "big")))
    if span.name:
        parts.append(_len(_SPAN_NAME, span.name.encode("utf-8")))
    parts.append(_uint(_SPAN_KIND, span.kind.value + 1))  # OTLP counts from UNSPECIFIED
    if span.start_time:
        parts.append(_SPAN_START + _pack_fixed64(span.start_time))
    if span.end_time:
        parts.append(_SPAN_END + _pack_fixed64(span.end_time))
    parts.append(_attributes(_SPAN_ATTR, span.attributes))
    parts.append(_uint(_SPAN_DROPPED_ATTR, span.dropped_attributes))
    for event in span.events:
        body = _EVENT_TIME + _pack_fixed64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _len(_EVENT_NAME, event.name.encode("utf-8"))
        body += _attributes(_EVENT_ATTR, event.attributes)
        body += _uint(_EVENT_DROPPED, event.dropped_attributes)
        parts.append(_len(_SPAN_EVENT, body))
    parts.append(_uint(_SPAN_DROPPED_EVENTS, span.dropped_events))
    for link in span.links:
        lctx = link.context
        body = _len(_LINK_TRACE_ID, lctx.trace_id.to_bytes(16, "big")) + _len(
            _LINK_SPAN_ID, lctx.span_id.to_bytes(8, "big")
        )
        body += _attributes(_LINK_ATTR, link.attributes)
        body += _uint(_LINK_DROPPED, link.dropped_attributes)
        body += _LINK_FLAGS + _pack_fixed32(_flags(lctx))
        parts.append(_len(_SPAN_LINK, body))
    parts.append(_uint(_SPAN_DROPPED_LINKS, span.dropped_links))
    status = span.status
    if status is not None:
        body = b""
        if status.description:
            body += _len(_STATUS_MESSAGE, status.description.encode("utf-8"))
        body += _uint(_STATUS_CODE, status.status_code.value)
        parts.append(_len(_SPAN_STATUS, body))
    parts.append(_SPAN_FLAGS + _pack_fixed32(_flags(parent)))
    return b"".join(parts)


def _scope(scope: InstrumentationScope) -> bytes:
    body = _len(_SCOPE_NAME, scope.name.encode("utf-8")) if scope.name else b""
    if scope.version:
        body += _len(_SCOPE_VERSION, scope.version.encode("utf-8"))
    body += _attributes(_SCOPE_ATTR, scope.attributes)
    return body


def _resource_spans(
    resource: Resource, scopes: Iterable[tuple[InstrumentationScope | None, list[bytes]]]
) -> bytes:
    body = _len(_RS_RESOURCE, _attributes(_RESOURCE_ATTR, resource.attributes))
    for scope, spans in scopes:
        inner = _len(_SS_SCOPE, _scope(scope)) if scope is not None else b""
        inner += b"".join(_len(_SS_SPANS, s) for s in spans)
        if scope is not None and scope.schema_url:
            inner += _len(_SS_SCHEMA, scope.schema_url.encode("utf-8"))
        body += _len(_RS_SCOPE_SPANS, inner)
    if resource.schema_url:
        body += _len(_RS_SCHEMA, resource.schema_url.encode("utf-8"))
    return body


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """A serialized ``ExportTraceServiceRequest`` for ``spans``, grouped as the SDK does."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        by_scope = grouped.setdefault(span.resource, {})
        by_scope.setdefault(span.instrumentation_scope or None, []).append(encode_span(span))
    return b"".join(
        _len(_REQUEST_RESOURCE_SPANS, _resource_spans(resource, scopes.items()))
        for resource, scopes in grouped.items()
    )


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The request message, parsed by the C runtime from :func:`encode_request`."""
    return ExportTraceServiceRequest.FromString(encode_request(spans))
