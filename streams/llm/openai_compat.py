"""Provider for any OpenAI-compatible chat-completions endpoint, via the official `openai` SDK.

The SDK's own retries are off by default (`max_retries=0`): retry/backoff and the circuit
breaker live in our layer (`streams.llm.retry`), where attempts are counted and traced.
SDK exceptions are mapped onto the contract's error classes so callers never import `openai`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import openai
from openai import AsyncOpenAI

from streams.llm.base import (
    ChatRequest,
    ChatResponse,
    LLMError,
    LLMTimeout,
    ProviderUnavailable,
    RateLimited,
    ToolCall,
    ToolSpec,
)

__all__ = ["OpenAICompatProvider"]


def _tool_payload(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def _wire_tool_call(call: Any) -> Any:
    """Accept ToolCall objects or {id, name, arguments-dict} in history; the API wants strings."""
    if isinstance(call, ToolCall):
        call = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if not isinstance(call, dict):
        return call
    if "function" in call:
        fn = dict(call["function"])
        if not isinstance(fn.get("arguments"), str):
            fn["arguments"] = json.dumps(fn.get("arguments") or {})
        return {**call, "type": call.get("type", "function"), "function": fn}
    args = call.get("arguments") or {}
    return {
        "id": call.get("id", ""),
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": args if isinstance(args, str) else json.dumps(args),
        },
    }


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    if not message.get("tool_calls"):
        return message
    return {**message, "tool_calls": [_wire_tool_call(c) for c in message["tool_calls"]]}


def _parse_arguments(raw: str | None, name: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw and raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise LLMError(f"model returned malformed JSON arguments for tool {name!r}: {exc}") from exc
    if not isinstance(value, dict):
        raise LLMError(f"model returned non-object arguments for tool {name!r}")
    return value


class OpenAICompatProvider:
    """Chat completions with function calling against `base_url` (OpenAI, vLLM, Ollama, ...)."""

    def __init__(
        self, base_url: str, api_key: str, name: str = "openai", max_retries: int = 0
    ) -> None:
        self.name = name
        self.base_url = base_url
        # Explicit arguments only: configuration comes from our settings, not from the SDK's
        # environment variable fallbacks for key and URL.
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries)

    async def aclose(self) -> None:
        await self._client.close()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [_wire_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "timeout": request.timeout_s,
        }
        if request.tools:
            kwargs["tools"] = [_tool_payload(t) for t in request.tools]

        started = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:  # subclass of APIConnectionError: check first
            raise LLMTimeout(
                f"{self.name}: request timed out after {request.timeout_s:g} s"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnavailable(f"{self.name}: connection failed: {exc}") from exc
        except openai.RateLimitError as exc:
            raise RateLimited(f"{self.name}: rate limited (429): {exc.message}") from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            message = f"{self.name}: HTTP {status}: {exc.message}"
            if status >= 500:
                raise ProviderUnavailable(message) from exc
            if status == 408:
                raise LLMTimeout(message) from exc
            raise LLMError(message) from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"{self.name}: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000.0

        if not completion.choices:
            raise LLMError(f"{self.name}: response has no choices")
        choice = completion.choices[0]
        message = choice.message
        tool_calls: list[ToolCall] = []
        for call in message.tool_calls or []:
            if call.type != "function":
                raise LLMError(f"{self.name}: unsupported tool call type {call.type!r}")
            tool_calls.append(
                ToolCall(
                    id=call.id,
                    name=call.function.name,
                    arguments=_parse_arguments(call.function.arguments, call.function.name),
                )
            )

        finish = choice.finish_reason or "stop"
        # Some compatible servers report "stop" alongside tool calls; normalise so callers can
        # rely on finish_reason. Other values (e.g. "content_filter") pass through unchanged.
        if (tool_calls and finish != "length") or finish == "function_call":
            finish = "tool_calls"

        usage = completion.usage
        return ChatResponse(
            content=message.content or "",
            tool_calls=tool_calls,
            finish_reason=finish,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            model=completion.model or request.model,
            provider=self.name,
            latency_ms=latency_ms,
        )
