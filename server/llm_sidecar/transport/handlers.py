"""Method handlers built from the service descriptors, with a deserializer that never raises.

grpcio turns an exception in a request deserializer into ``UNKNOWN`` and logs
it with a traceback. Here a request too large or not decodable becomes an
:class:`Undecodable` value instead, and the RPC wrapper answers it with
``INVALID_ARGUMENT`` like any other bad request. The size is checked on the
raw bytes, before any parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from llm_sidecar.core.vocabulary.errors import InvalidRequestError, RequestTooLargeError

#: The setting whose limit an oversized request is refused against.
MAX_REQUEST_SETTING = "server.max_request_bytes"


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands in for a request that is too large or is not the method's message."""

    error: InvalidRequestError


def safe_deserializer(
    message_class: type[Message], max_bytes: int
) -> Callable[[bytes], Message | Undecodable]:
    """``message_class.FromString`` that returns :class:`Undecodable` instead of raising."""
    from_string = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def deserialize(raw: bytes) -> Message | Undecodable:
        if len(raw) > max_bytes:
            return Undecodable(
                RequestTooLargeError("request", len(raw), max_bytes, setting=MAX_REQUEST_SETTING)
            )
        try:
            return from_string(raw)
        except Exception:  # DecodeError, and whatever else a hostile payload provokes
            return Undecodable(
                InvalidRequestError("request", f"is not a valid {name} message (wire format)")
            )

    return deserialize


def add_service(
    server: grpc.aio.Server,
    service: ServiceDescriptor,
    servicer: Any,
    messages: Any,
    *,
    max_request_bytes: int,
) -> dict[str, grpc.RpcMethodHandler]:
    """Register every method of ``service`` on ``servicer``'s like-named coroutine;
    return the handlers by fully qualified method name ("/pkg.Service/Method").

    ``messages`` is the generated module holding the request and response classes.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        request_class = getattr(messages, method.input_type.name)
        response_class = getattr(messages, method.output_type.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=safe_deserializer(request_class, max_request_bytes),
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
    return {f"/{service.full_name}/{name}": handler for name, handler in handlers.items()}
