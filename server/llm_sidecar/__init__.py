"""LLM Manager sidecar: a gRPC service giving every user an isolated LLM manager.

The public surface is re-exported here; everything else is internal.
"""

from llm_sidecar.app import Sidecar
from llm_sidecar.config import Settings, load_settings
from llm_sidecar.core.context import UserExecutionContext
from llm_sidecar.core.errors import (
    DeadlineExceededError,
    InvalidContextError,
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    ResourceExhaustedError,
    SidecarError,
)
from llm_sidecar.core.manager import LLMManager
from llm_sidecar.core.registry import LLMManagerFactory, ManagerRegistry, get_llm_manager

__all__ = [
    "DeadlineExceededError",
    "InvalidContextError",
    "InvalidRequestError",
    "LLMManager",
    "LLMManagerFactory",
    "ManagerRegistry",
    "ProviderError",
    "ProviderUnavailableError",
    "ResourceExhaustedError",
    "Settings",
    "Sidecar",
    "SidecarError",
    "UserExecutionContext",
    "get_llm_manager",
    "load_settings",
]
