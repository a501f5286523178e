"""All configuration in one typed place.

Sources, highest priority first: environment variables (prefix
``LLM_SIDECAR_``, ``__`` between nested names, JSON for lists and maps), then a
TOML or JSON file (``--config PATH`` or ``LLM_SIDECAR_CONFIG``), then the
defaults below, which run with no file, no key and nothing installed. Where a
setting has a counterpart in the core, its default is the core's own.

The typed schema is split by section (``listeners``, ``routes``, ``sections``, the
whole in ``settings``), apart from the checks of the environment (``environment``)
and the redaction that ``check-config`` prints (``redaction``).
"""

from llm_sidecar.config.base import CONFIG_ENV, ENV_PREFIX
from llm_sidecar.config.environment import (
    ConfigurationError,
    check_environment,
    check_nested_variables,
    environment_problems,
    referenced_variables,
    unknown_setting,
    unknown_variables,
)
from llm_sidecar.config.listeners import HttpSettings, ServerSettings, is_loopback, is_tcp
from llm_sidecar.config.mcp import McpRuleSettings, McpServerSettings, McpSettings
from llm_sidecar.config.redaction import REDACTED, redacted
from llm_sidecar.config.routes import (
    EmbeddingSettings,
    ModelRoute,
    PriceSettings,
    ProviderSettings,
)
from llm_sidecar.config.sections import (
    CacheSettings,
    FailoverSettings,
    HistorySettings,
    LimitSettings,
    ManagerSettings,
    QuotaSettings,
    RedisSettings,
    ResourceSettings,
    ResponsesSettings,
    TelemetrySettings,
)
from llm_sidecar.config.settings import Settings, load_settings, read_config_file

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "REDACTED",
    "CacheSettings",
    "ConfigurationError",
    "EmbeddingSettings",
    "FailoverSettings",
    "HistorySettings",
    "HttpSettings",
    "LimitSettings",
    "ManagerSettings",
    "McpRuleSettings",
    "McpServerSettings",
    "McpSettings",
    "ModelRoute",
    "PriceSettings",
    "ProviderSettings",
    "QuotaSettings",
    "RedisSettings",
    "ResourceSettings",
    "ResponsesSettings",
    "ServerSettings",
    "Settings",
    "TelemetrySettings",
    "check_environment",
    "check_nested_variables",
    "environment_problems",
    "is_loopback",
    "is_tcp",
    "load_settings",
    "read_config_file",
    "redacted",
    "referenced_variables",
    "unknown_setting",
    "unknown_variables",
]
