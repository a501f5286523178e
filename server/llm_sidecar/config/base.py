"""What every part of the configuration shares: how a section behaves, and the names
its sources use."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "LLM_SIDECAR_"
CONFIG_ENV = "LLM_SIDECAR_CONFIG"

# RFC 9110 token characters; an environment variable name as POSIX shells accept it.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Section(BaseModel):
    """A section: unknown keys refused, values frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
