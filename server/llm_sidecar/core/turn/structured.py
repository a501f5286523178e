"""Structured output: schema checking and answer validation.

Messages name where and why validation failed but never quote the model's
output, which may hold user data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError as _JsonSchemaError
from jsonschema.protocols import Validator

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError, SchemaError

MAX_SCHEMA_BYTES = 64 * 1024


def parse_schema(text: str) -> dict[str, Any]:
    """Parse and check a JSON Schema sent by a caller."""
    if not text.strip():
        raise SchemaError("json_schema", "is required")
    if len(text) > MAX_SCHEMA_BYTES:
        raise SchemaError("json_schema", f"is over the limit of {MAX_SCHEMA_BYTES} bytes")
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise SchemaError(
            "json_schema", f"is not JSON (line {getattr(exc, 'lineno', '?')})"
        ) from None
    if not isinstance(schema, dict):
        raise SchemaError("json_schema", "must be a JSON object")
    compile_schema(schema)
    return schema


def checked_schema(schema: dict[str, Any], field: str = "json_schema") -> type[Validator]:
    """The validator class for ``schema``, once it is checked against its metaschema;
    :class:`SchemaError` naming ``field`` when it is not a valid JSON Schema."""
    cls: type[Validator] = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        cls.check_schema(schema)
    except _JsonSchemaError as exc:
        raise SchemaError(
            field, f"is not a valid JSON Schema: '{exc.validator}' at {_schema_place(exc.path)}"
        ) from None
    return cls


#: Keywords whose keys are names the caller chose (properties, definitions, ...).
_NAMING_KEYWORDS = frozenset(
    {
        "properties",
        "patternProperties",
        "$defs",
        "definitions",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
    }
)


def _schema_place(path: Iterable[Any]) -> str:
    """Where in a schema, as keywords and indexes: a name the caller chose reads as
    ``<name>`` (an error message never quotes what a caller sent)."""
    parts: list[str] = []
    for part in path:
        # A keyword naming a map of names; the part after a name is a keyword again.
        is_name = bool(parts) and parts[-1] in _NAMING_KEYWORDS
        parts.append("<name>" if is_name else str(part))
    return "/".join(parts) or "(root)"


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A validator for ``schema``; :class:`SchemaError` when it is not a valid schema."""
    return checked_schema(schema)(schema)


def _strip_fences(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        if stripped.rstrip().endswith("```"):
            stripped = stripped.rstrip()[:-3]
    return stripped


def validate_output(text: str, validator: Validator) -> Any:
    """Parse a model's answer as JSON and validate it; the document on success."""
    try:
        document = json.loads(_strip_fences(text))
    except ValueError:
        raise ProviderError(ErrorKind.INVALID_OUTPUT, "the answer is not JSON") from None
    error = next(iter(validator.iter_errors(document)), None)
    if error is not None:
        # The keys are the model's output: an error message shows only their places.
        where = "/" + "/".join(
            str(p) if isinstance(p, int) else "<key>" for p in error.absolute_path
        )
        raise ProviderError(
            ErrorKind.INVALID_OUTPUT,
            f"the answer does not match the schema: '{error.validator}' at {where}",
        )
    return document


def canonical_json(document: Any) -> str:
    """Compact, stable JSON text of a document."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
