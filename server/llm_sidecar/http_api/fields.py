"""Reading request bodies: typed field access that names the field at fault.

A body is hostile input like metadata: every field read here is checked for
its type (and range, where it has one), and a bad one is an InvalidRequestError
naming its path (``messages[2].content[0].image_url.url``), never quoting it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, NoReturn

from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.tools import Image

_MISSING: Any = object()


class Fields:
    """One JSON object of a body, at ``path`` (``""`` for the body itself)."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise InvalidRequestError(path or "body", "must be a JSON object")
        self._data = data
        self._path = path

    @property
    def path(self) -> str:
        """Where this object is in the body (``tools[2]``)."""
        return self._path

    @property
    def data(self) -> dict[str, Any]:
        """The object as sent."""
        found: dict[str, Any] = self._data
        return found

    def name(self, key: str) -> str:
        """The full path of ``key`` in this object."""
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        """Whether ``key`` is present and not null."""
        return self._data.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value of ``key`` as sent (None when absent)."""
        return self._data.get(key)

    def keys(self) -> list[str]:
        return list(self._data)

    def obj(self, key: str) -> Fields | None:
        """A nested object, or None when absent."""
        value = self._data.get(key)
        return None if value is None else Fields(value, self.name(key))

    def text(self, key: str, default: str | None = None, *, max_length: int = 0) -> str:
        value = self._data.get(key)
        if value is None:
            if default is None:
                raise InvalidRequestError(self.name(key), "is required")
            return default
        if not isinstance(value, str):
            raise InvalidRequestError(self.name(key), "must be a string")
        if max_length and len(value) > max_length:
            raise InvalidRequestError(self.name(key), f"is longer than {max_length} characters")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise InvalidRequestError(self.name(key), "must be true or false")
        return value

    def integer(self, key: str, *, minimum: int | None = None) -> int | None:
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequestError(self.name(key), "must be an integer")
        if minimum is not None and value < minimum:
            raise InvalidRequestError(self.name(key), f"must be at least {minimum}")
        return value

    def number(self, key: str, low: float, high: float) -> float | None:
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequestError(self.name(key), "must be a number")
        if not math.isfinite(value) or not low <= value <= high:
            raise InvalidRequestError(self.name(key), f"must be between {low:g} and {high:g}")
        return float(value)

    def items(self, key: str, *, required: bool = False) -> list[Any]:
        value = self._data.get(key)
        if value is None:
            if required:
                raise InvalidRequestError(self.name(key), "is required")
            return []
        if not isinstance(value, list):
            raise InvalidRequestError(self.name(key), "must be an array")
        return value

    def refuse(self, key: str, why: str) -> NoReturn:
        """Refuse a field this API serves but the sidecar does not (it would change the
        answer's meaning): the caller learns which one, and why."""
        raise InvalidRequestError(self.name(key), why)


def content_parts(item: Fields, read: Callable[[Fields], str | Image]) -> list[str | Image]:
    """A message's ``content`` as text and images, in the caller's order: a string, or
    an array of parts, each read by ``read`` (which knows the API's part types)."""
    content = item.raw("content")
    if isinstance(content, str):
        return [content]
    return [
        read(Fields(raw, item.name(f"content[{j}]")))
        for j, raw in enumerate(item.items("content", required=True))
    ]


def text_of(item: Fields, parts: list[str | Image]) -> str:
    """The text of content that may hold no image (any turn but the user's)."""
    if any(isinstance(part, Image) for part in parts):
        raise InvalidRequestError(item.name("content"), "images belong on user turns")
    return "\n".join(part for part in parts if isinstance(part, str))


def stop_sequences(fields: Fields, key: str) -> tuple[str, ...]:
    """``stop``: a string or an array of strings."""
    value = fields.raw(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidRequestError(fields.name(key), "must be a string or an array of strings")


def json_text(value: Any) -> str:
    """A JSON value as compact text (tool arguments, schemas)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
