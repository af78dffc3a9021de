"""OpenAICompatProvider through the real `openai` SDK against a real local HTTP server.

The server is a scripted chat-completions endpoint (aiohttp on 127.0.0.1, random port): it
records every request body and answers from a queue, so mapping, error translation and retry
counts are checked end to end over HTTP. No Kafka or network access needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from streams.llm import (
    ChatRequest,
    LLMError,
    LLMTimeout,
    OpenAICompatProvider,
    ProviderUnavailable,
    RateLimited,
    ToolSpec,
    call_with_retries,
    call_with_retries_outcome,
)


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | None = None
    delay_s: float = 0.0


@dataclass
class FakeServer:
    """Answers POST /v1/chat/completions from `script`; the last reply repeats when exhausted."""

    base_url: str = ""
    script: list[Reply] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.json_response(reply.body or {}, status=reply.status)


def completion(
    content: str | None = "",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    model: str = "gpt-test",
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error(status: int, message: str, kind: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "code": None}})


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def provider(server: FakeServer) -> AsyncIterator[OpenAICompatProvider]:
    llm = OpenAICompatProvider(base_url=server.base_url, api_key="test-key", name="local")
    try:
        yield llm
    finally:
        await llm.aclose()


REFUND_TOOL = ToolSpec(
    "issue_refund",
    "Refund an order",
    {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
        "required": ["order_id", "amount"],
    },
)


def _request(**overrides: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You are the billing agent of Acme."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 64,
        "timeout_s": 5.0,
        "call_key": "req-9:0",
    }
    fields.update(overrides)
    return ChatRequest(**fields)


async def _no_sleep(_: float) -> None:
    return None


async def test_plain_answer(server: FakeServer, provider: OpenAICompatProvider) -> None:
    server.script = [Reply(body=completion("Hi! How can I help?", model="gpt-test-0613"))]
    response = await provider.chat(_request())

    assert response.content == "Hi! How can I help?"
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert (response.input_tokens, response.output_tokens) == (11, 7)
    assert response.model == "gpt-test-0613"
    assert response.provider == "local"
    assert response.latency_ms > 0

    [body] = server.received
    assert body["model"] == "gpt-test"
    assert body["max_tokens"] == 64
    assert body["messages"] == _request().messages
    assert "tools" not in body


async def test_tool_call_answer(server: FakeServer, provider: OpenAICompatProvider) -> None:
    server.script = [
        Reply(
            body=completion(
                None,
                finish_reason="tool_calls",
                tool_calls=[
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {
                            "name": "issue_refund",
                            "arguments": json.dumps({"order_id": "1234", "amount": 40.0}),
                        },
                    }
                ],
            )
        )
    ]
    response = await provider.chat(_request(tools=[REFUND_TOOL]))

    assert response.finish_reason == "tool_calls"
    assert response.content == ""
    [call] = response.tool_calls
    assert (call.id, call.name, call.arguments) == (
        "call_abc",
        "issue_refund",
        {"order_id": "1234", "amount": 40.0},
    )
    assert server.received[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "issue_refund",
                "description": "Refund an order",
                "parameters": REFUND_TOOL.parameters,
            },
        }
    ]


async def test_history_tool_calls_are_sent_in_wire_format(
    server: FakeServer, provider: OpenAICompatProvider
) -> None:
    server.script = [Reply(body=completion("Refund issued."))]
    history = [
        {"role": "user", "content": "refund $40 for order 1234"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "name": "issue_refund", "arguments": {"order_id": "1234"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "issued"}'},
    ]
    await provider.chat(_request(messages=history, tools=[REFUND_TOOL]))
    sent = server.received[0]["messages"][1]["tool_calls"][0]
    assert sent == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "issue_refund", "arguments": '{"order_id": "1234"}'},
    }


async def test_429_then_success_through_retries(
    server: FakeServer, provider: OpenAICompatProvider
) -> None:
    server.script = [
        error(429, "Rate limit reached", "rate_limit_error"),
        Reply(body=completion("ok")),
    ]
    outcome = await call_with_retries_outcome(provider, _request(), attempts=3, sleep=_no_sleep)
    assert outcome.response.content == "ok"
    assert outcome.attempts == 2
    assert outcome.errors == ("rate_limit",)
    assert len(server.received) == 2  # the SDK itself did not retry


async def test_persistent_429_raises_after_attempts(
    server: FakeServer, provider: OpenAICompatProvider
) -> None:
    server.script = [error(429, "Rate limit reached", "rate_limit_error")]
    with pytest.raises(RateLimited):
        await call_with_retries(provider, _request(), attempts=3, sleep=_no_sleep)
    assert len(server.received) == 3


async def test_500_is_provider_unavailable(
    server: FakeServer, provider: OpenAICompatProvider
) -> None:
    server.script = [error(500, "boom", "server_error")]
    with pytest.raises(ProviderUnavailable):
        await provider.chat(_request())
    assert len(server.received) == 1


async def test_400_is_not_retried(server: FakeServer, provider: OpenAICompatProvider) -> None:
    server.script = [error(400, "bad model", "invalid_request_error")]
    with pytest.raises(LLMError, match="bad model") as info:
        await call_with_retries(provider, _request(), attempts=3, sleep=_no_sleep)
    assert not info.value.retryable
    assert len(server.received) == 1


async def test_slow_server_is_llm_timeout(
    server: FakeServer, provider: OpenAICompatProvider
) -> None:
    server.script = [Reply(body=completion("late"), delay_s=1.0)]
    with pytest.raises(LLMTimeout):
        await provider.chat(_request(timeout_s=0.2))


async def test_connection_refused_is_provider_unavailable() -> None:
    llm = OpenAICompatProvider(base_url="http://127.0.0.1:9/v1", api_key="k")  # discard port
    try:
        with pytest.raises(ProviderUnavailable):
            await llm.chat(_request())
    finally:
        await llm.aclose()
