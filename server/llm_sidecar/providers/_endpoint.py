"""One HTTP provider's endpoint and the plumbing every HTTP adapter shares.

An adapter holds only its wire format (how a request becomes a body, how a body or
an event stream becomes a completion). Where it sends them lives here: the base
URL with its query parameters, the headers with the credentials, the provider's
own connection pool, error mapping, and the health probe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError
from llm_sidecar.core.vocabulary.models import EmbeddingRequest, Embeddings
from llm_sidecar.core.vocabulary.providers import Connections
from llm_sidecar.providers._http import connection_error, error_for_status, parse_json_body
from llm_sidecar.providers._pool import HttpPool


class Endpoint:
    """Where one provider is reached: base URL, query parameters, headers, pool."""

    __slots__ = ("_base", "_headers", "_pool", "_query", "_session")

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        pool: HttpPool,
        query: Mapping[str, str] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._query = "?" + urlencode(dict(query)) if query else ""
        self._headers = {"Content-Type": "application/json", **headers}
        self._pool = pool
        self._session = pool.session

    def url(self, path: str) -> str:
        """The full URL of ``path`` (which starts with "/"), query parameters included."""
        return self._base + path + self._query

    @asynccontextmanager
    async def post(
        self, path: str, payload: bytes, deadline: float | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``payload`` holding one of the provider's connections; the response once
        its status is 200. Any other status is the mapped ProviderError, and a transport
        failure (while sending, or while the caller reads the body) a connection error
        that never quotes the URL."""
        try:
            async with (
                self._pool.connection(deadline),
                self._session.post(self.url(path), data=payload, headers=self._headers) as reply,
            ):
                if reply.status != 200:
                    await reply.read()
                    raise error_for_status(reply.status, reply.headers)
                yield reply
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from None

    async def post_json(self, path: str, payload: bytes, deadline: float | None) -> dict[str, Any]:
        """POST and read the whole answer as a JSON object."""
        async with self.post(path, payload, deadline) as reply:
            raw = await reply.read()
        return parse_json_body(raw)

    async def probe(self, path: str) -> None:
        """GET ``path`` (a model list): an outage, refused credentials or a rate limit
        raise the mapped ProviderError; other answers show the provider is there."""
        try:
            async with self._session.get(self.url(path), headers=self._headers) as reply:
                await reply.read()
                if reply.status >= 500 or reply.status in (401, 403, 429):
                    raise error_for_status(reply.status, reply.headers)
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from None

    def connections(self) -> Connections:
        """The pool's figures, read without I/O."""
        pool = self._pool
        return Connections(pool.in_use, pool.waiting, pool.max_connections)


class HttpProvider:
    """What every HTTP adapter shares: its name, upstream model, endpoint and probe.
    Subclasses add their wire format (``complete``, ``stream``)."""

    #: GenAI semantic-convention provider name.
    system = ""
    #: The model list a ``models`` probe reads.
    models_path = "/models"

    def __init__(
        self,
        *,
        name: str,
        model: str,
        endpoint: Endpoint,
        probe: str = "models",
        prompt_caching: bool = True,
    ) -> None:
        self.name = name
        self.model = model
        self._endpoint = endpoint
        self._probe_mode = probe
        self._prompt_caching = prompt_caching

    def connections(self) -> Connections:
        return self._endpoint.connections()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Not every kind embeds: configuration refuses such a provider on an embedding
        route, so this is only a guard."""
        raise ProviderError(ErrorKind.REQUEST_REJECTED, f"{self.system} providers do not embed")

    async def probe(self) -> None:
        if self._probe_mode == "models":
            await self._endpoint.probe(self.models_path)
