"""A bare HTTP/2 gRPC client (h2 over a socket), for inputs no gRPC library will send:
metadata values with raw non-UTF-8 bytes, bodies that are not protobuf, huge frames.

It speaks just enough of the protocol (HTTP/2 with flow control, the gRPC
length-prefixed message, trailers) to see what the server answers.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class RawReply:
    """What came back: the gRPC status (None when the stream was reset) and message."""

    status: int | None = None
    message: str = ""
    headers: dict[str, bytes] = field(default_factory=dict)
    body: bytes = b""
    reset: bool = False


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed, uncompressed message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def call(
    address: tuple[str, int],
    path: str,
    body: bytes,
    metadata: list[tuple[bytes, bytes]] | None = None,
    *,
    timeout: float = 10.0,
) -> RawReply:
    """One unary call; ``body`` is sent as one gRPC message (use ``framed=False`` bodies
    through :func:`frame` yourself to send anything else)."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    reply = RawReply()
    deadline = time.monotonic() + timeout
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.initiate_connection()
        conn.increment_flow_control_window(2**30)
        sock.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", f"{address[0]}:{address[1]}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *(metadata or []),
        ]
        conn.send_headers(stream, headers)
        sock.sendall(conn.data_to_send())
        payload = memoryview(frame(body))
        done = False
        while not done:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer in time")
            sent_some = False
            while payload and not done:
                try:
                    window = min(
                        conn.local_flow_control_window(stream), conn.max_outbound_frame_size
                    )
                except (h2.exceptions.StreamClosedError, KeyError):
                    payload = memoryview(b"")
                    break
                if window <= 0:
                    break
                chunk, payload = payload[:window], payload[window:]
                try:
                    conn.send_data(stream, bytes(chunk), end_stream=not payload)
                except h2.exceptions.StreamClosedError:
                    payload = memoryview(b"")
                    break
                sock.sendall(conn.data_to_send())
                sent_some = True
            if sent_some and payload:
                continue
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no answer in time") from None
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    for key, value in event.headers:
                        reply.headers[key.decode()] = value
                elif isinstance(event, h2.events.DataReceived):
                    reply.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    reply.reset = True
                    done = True
                elif isinstance(event, h2.events.StreamEnded | h2.events.ConnectionTerminated):
                    done = True
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
    if "grpc-status" in reply.headers:
        reply.status = int(reply.headers["grpc-status"])
        reply.message = urllib.parse.unquote(reply.headers.get("grpc-message", b"").decode())
    return reply
