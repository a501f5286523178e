"""Typed Python client of the LLM Manager sidecar.

from llm_manager_client import AsyncLLMManagerClient, UserContext

async with AsyncLLMManagerClient("127.0.0.1:50051", UserContext("alice", session_id="s1")) as c:
    print(await c.ask("hello"))
"""

from llm_manager_client._agent import Image, Message, Tool, ToolCall
from llm_manager_client._async import DEFAULT_TIMEOUT, AsyncLLMManagerClient
from llm_manager_client._context import UserContext
from llm_manager_client._exceptions import (
    CancelledError,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    LLMManagerError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StructuredOutputError,
    UnauthenticatedError,
    UnavailableError,
    from_rpc_error,
)
from llm_manager_client._models import (
    AskResult,
    Attempt,
    Conversation,
    Embedding,
    EmbedResult,
    QuotaStatus,
    Released,
    ResponseMetadata,
    SessionEnded,
    StreamChunk,
    StructuredResult,
    Usage,
    UsageReport,
    UsageRow,
)
from llm_manager_client._sync import LLMManagerClient

#: The contract this client speaks: llm_manager.v1, at this additive revision.
CONTRACT_VERSION = "1.3.0"

__all__ = [
    "CONTRACT_VERSION",
    "DEFAULT_TIMEOUT",
    "AskResult",
    "AsyncLLMManagerClient",
    "Attempt",
    "CancelledError",
    "Conversation",
    "DeadlineExceededError",
    "EmbedResult",
    "Embedding",
    "Image",
    "InternalError",
    "InvalidArgumentError",
    "LLMManagerClient",
    "LLMManagerError",
    "Message",
    "PermissionDeniedError",
    "QuotaStatus",
    "Released",
    "ResourceExhaustedError",
    "ResponseMetadata",
    "SessionEnded",
    "StreamChunk",
    "StructuredOutputError",
    "StructuredResult",
    "Tool",
    "ToolCall",
    "UnauthenticatedError",
    "UnavailableError",
    "Usage",
    "UsageReport",
    "UsageRow",
    "UserContext",
    "from_rpc_error",
]
