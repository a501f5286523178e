"""LLM Manager sidecar: a gRPC service giving every user an isolated LLM manager.

The public surface is re-exported here; everything else is internal.
"""

from llm_sidecar.app import Sidecar
from llm_sidecar.config import Settings, load_settings
from llm_sidecar.core.turn.manager import LLMManager
from llm_sidecar.core.turn.registry import LLMManagerFactory, ManagerRegistry, get_llm_manager
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import (
    DeadlineExceededError,
    InvalidContextError,
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    ResourceExhaustedError,
    SidecarError,
)

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
