"""The provider contract every LLM backend speaks: OpenAI-style chat with function calling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model; `parameters` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for; `arguments` already parsed from JSON."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    """One LLM call. `messages` are OpenAI chat messages (role/content/tool_calls/tool_call_id)."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    tools: list[ToolSpec] = field(default_factory=list)
    timeout_s: float = 30.0
    # Stable per call (request id + step): the simulator seeds from it.
    call_key: str = ""


@dataclass(frozen=True)
class ChatResponse:
    content: str
    tool_calls: list[ToolCall]
    finish_reason: str  # "stop" | "tool_calls" | "length"
    input_tokens: int
    output_tokens: int
    model: str
    provider: str
    latency_ms: float


class LLMError(Exception):
    """Base of provider failures; `kind` feeds `error.type` on spans."""

    kind = "llm_error"
    retryable = False


class RateLimited(LLMError):
    kind = "rate_limit"
    retryable = True


class LLMTimeout(LLMError):
    kind = "timeout"
    retryable = True


class ProviderUnavailable(LLMError):
    kind = "unavailable"
    retryable = True


class Provider(Protocol):
    name: str

    async def chat(self, request: ChatRequest) -> ChatResponse: ...
