"""An HTTP/1.1 client on a bare socket, for what the usual clients never do: send one
body in several TCP writes with pauses between, as slow clients and proxies do, with
a Content-Length or in chunks."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

#: A slow client's pause between two writes of one body. It shapes the input (the
#: server sees the body arrive in pieces), it does not wait for anything.
PAUSE_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class RawReply:
    """A whole answer, read until the server closed the connection."""

    status: int
    headers: dict[str, str]
    body: bytes


async def post_in_pieces(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    pieces: int = 8,
    chunked: bool = False,
) -> RawReply:
    """POST ``body`` in ``pieces`` writes, with a pause before each; framed by its
    Content-Length, or with ``chunked`` as chunked transfer coding (no length)."""
    reader, writer = await asyncio.open_connection(host, port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", framing, "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    step = -(-len(body) // pieces)
    # A server that refuses early (413) may stop reading: its answer is still read below.
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        for start in range(0, len(body), step):
            await asyncio.sleep(PAUSE_SECONDS)
            piece = body[start : start + step]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    raw = await reader.read()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return parse_reply(raw)


def parse_reply(raw: bytes) -> RawReply:
    """An HTTP/1.1 answer's status, headers (names lower-cased) and body, de-chunked."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawReply(int(status_line.split()[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)
