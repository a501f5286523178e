"""The environment a configuration runs in: unknown ``LLM_SIDECAR_*`` variables, and
keys or tokens that are unset."""

from __future__ import annotations

import os

from pydantic import BaseModel

from llm_sidecar.config.base import (
    CONFIG_ENV,
    ENV_PREFIX,
)
from llm_sidecar.config.settings import Settings


class ConfigurationError(ValueError):
    """The configuration cannot run; the message says what to change."""


def _known_path(model: type[BaseModel], parts: list[str]) -> bool:
    """Whether ``parts`` (lowercase, from a variable name split on ``__``) names a setting."""
    if not parts:
        return True
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _known_path(annotation, parts[1:])
    # A map (models, headers) takes any key below it; a scalar takes nothing more.
    return len(parts) == 1 or str(annotation).startswith("dict")


def referenced_variables(settings: Settings) -> set[str]:
    """Environment variables the configuration names (keys, tokens, pseudonym key)."""
    names = {CONFIG_ENV, settings.telemetry.pseudonym_key_env}
    if settings.server.auth_token_env:
        names.add(settings.server.auth_token_env)
    for route in settings.models.values():
        for provider in route.providers:
            names.update(provider.secret_variables())
    for server in settings.mcp.servers:
        names.update(server.header_env.values())
    return names


def unknown_variables(
    environ: dict[str, str], referenced: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """``LLM_SIDECAR_*`` variables that name no setting (a typo would otherwise be
    ignored), apart from ``referenced`` ones (variables the configuration reads keys from)."""
    unknown = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name in referenced:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if not _known_path(Settings, parts):
            unknown.append(name)
    return unknown


def unknown_setting(name: str) -> str:
    """The complaint about a variable that names no setting."""
    return (
        f"{name} is not a setting (settings are LLM_SIDECAR_<SECTION>__<KEY>, "
        "e.g. LLM_SIDECAR_SERVER__PORT)"
    )


def check_nested_variables(environ: dict[str, str]) -> None:
    """Refuse ``LLM_SIDECAR_<SECTION>__<KEY>`` variables naming no setting, before the
    settings are read (which would refuse them too, without naming the variable)."""
    nested = [name for name in unknown_variables(environ) if "__" in name]
    if nested:
        raise ConfigurationError("; ".join(unknown_setting(name) for name in nested))


def environment_problems(settings: Settings, environ: dict[str, str]) -> list[str]:
    """What in the environment keeps ``settings`` from running, one sentence each."""
    problems = [
        unknown_setting(name) for name in unknown_variables(environ, referenced_variables(settings))
    ]
    for route_name, route in settings.models.items():
        for provider in route.providers:
            for variable in provider.secret_variables():
                if not environ.get(variable, "").strip():
                    problems.append(
                        f"models.{route_name}: provider {provider.name!r} reads its key from "
                        f"${variable}, which is unset or empty"
                    )
    for server in settings.mcp.servers:
        for header, variable in server.header_env.items():
            if not environ.get(variable, "").strip():
                problems.append(
                    f"mcp.servers: server {server.name!r} reads its {header} header from "
                    f"${variable}, which is unset or empty"
                )
    token = settings.server.auth_token_env
    if token and not environ.get(token, "").strip():
        problems.append(f"server.auth_token_env names ${token}, which is unset or empty")
    return problems


def check_environment(settings: Settings, environ: dict[str, str] | None = None) -> None:
    """Raise :class:`ConfigurationError` listing every problem :func:`environment_problems`
    finds."""
    problems = environment_problems(settings, dict(os.environ if environ is None else environ))
    if problems:
        raise ConfigurationError("; ".join(problems))
