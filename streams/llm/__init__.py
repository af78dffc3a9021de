"""LLM backends behind one contract (`base`), plus retries and a factory keyed by settings."""

from __future__ import annotations

from typing import Any

from streams.llm.base import (
    ChatRequest,
    ChatResponse,
    LLMError,
    LLMTimeout,
    Provider,
    ProviderUnavailable,
    RateLimited,
    ToolCall,
    ToolSpec,
)
from streams.llm.retry import (
    CallOutcome,
    backoff_delay,
    call_with_retries,
    call_with_retries_outcome,
)
from streams.llm.simulator import SimulatedProvider, SimulatorConfig

__all__ = [
    "CallOutcome",
    "ChatRequest",
    "ChatResponse",
    "LLMError",
    "LLMTimeout",
    "OpenAICompatProvider",
    "Provider",
    "ProviderUnavailable",
    "RateLimited",
    "SimulatedProvider",
    "SimulatorConfig",
    "ToolCall",
    "ToolSpec",
    "backoff_delay",
    "build_provider",
    "call_with_retries",
    "call_with_retries_outcome",
]


def build_provider(kind: str, **kwargs: Any) -> Provider:
    """Build a backend by name.

    "simulator": `config=SimulatorConfig(...)` or the config's fields as keywords (seed=...).
    "openai": `OpenAICompatProvider` keywords (base_url, api_key, name, max_retries).
    """
    normalized = kind.strip().lower()
    if normalized == "simulator":
        if "config" in kwargs:
            return SimulatedProvider(**kwargs)
        return SimulatedProvider(SimulatorConfig(**kwargs))
    if normalized == "openai":
        from streams.llm.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(**kwargs)
    raise ValueError(f"unknown LLM provider {kind!r} (expected 'simulator' or 'openai')")


def __getattr__(name: str) -> Any:
    # Imported lazily so the simulator path does not pay for importing the openai SDK.
    if name == "OpenAICompatProvider":
        from streams.llm.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
