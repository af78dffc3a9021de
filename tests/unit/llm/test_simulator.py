"""The simulator is the default backend: its determinism and test hooks are part of the contract."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from streams.llm import (
    ChatRequest,
    ChatResponse,
    LLMTimeout,
    RateLimited,
    SimulatedProvider,
    SimulatorConfig,
    ToolSpec,
    build_provider,
    call_with_retries_outcome,
)

SYSTEM = {
    "role": "system",
    "content": "You are the billing agent of Acme. Handle refunds, charges, invoices and "
    "subscriptions. Follow the refund policy.",
}


def _tool(name: str, *required: str) -> ToolSpec:
    props = {r: {"type": "string"} for r in required}
    return ToolSpec(
        name, f"{name} tool", {"type": "object", "properties": props, "required": list(required)}
    )


TOOLS = [
    _tool("lookup_order", "order_id"),
    _tool("issue_refund", "order_id", "amount"),
    _tool("reset_password", "user_id"),
    _tool("check_outage", "service"),
    _tool("delete_account", "user_id"),
]


def _fast(**overrides: Any) -> SimulatedProvider:
    return SimulatedProvider(SimulatorConfig(latency_ms_mean=1.0, **overrides))


def _request(
    text: str,
    *,
    extra: list[dict[str, Any]] | None = None,
    tools: list[ToolSpec] | None = None,
    max_tokens: int = 512,
    call_key: str = "req-1:0",
    timeout_s: float = 30.0,
) -> ChatRequest:
    return ChatRequest(
        model="sim-small",
        messages=[SYSTEM, {"role": "user", "content": text}, *(extra or [])],
        max_tokens=max_tokens,
        tools=TOOLS if tools is None else tools,
        timeout_s=timeout_s,
        call_key=call_key,
    )


def _tool_round(response: ChatResponse, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant tool-call message and the tool result, as the executor would append them."""
    call = response.tool_calls[0]
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
    ]


async def test_same_request_gives_identical_response() -> None:
    first = await _fast().chat(_request("How do I change my plan?"))
    second = await _fast().chat(_request("How do I change my plan?"))
    again = await _fast().chat(_request("How do I change my plan?"))
    assert first == second == again
    assert first.provider == "simulator"
    assert first.model == "sim-small"
    assert first.finish_reason == "stop"
    assert first.content


async def test_seed_changes_the_draws() -> None:
    request = _request("How do I change my plan?")
    responses = [
        await SimulatedProvider(SimulatorConfig(seed=seed, latency_ms_mean=1.0)).chat(request)
        for seed in range(8)
    ]
    # Latency jitter alone differs with the seed; wording usually does too.
    assert len({r.latency_ms for r in responses}) > 1
    assert len({r.content for r in responses}) > 1


async def test_refund_text_becomes_tool_call() -> None:
    response = await _fast().chat(_request("Please refund $40 for order 1234"))
    assert response.finish_reason == "tool_calls"
    assert response.content == ""
    [call] = response.tool_calls
    assert call.name == "issue_refund"
    assert call.arguments == {"order_id": "1234", "amount": 40.0}
    assert call.id.startswith("call_")

    other = await _fast().chat(_request("refund 250 dollars on order #77"))
    assert other.tool_calls[0].arguments == {"order_id": "77", "amount": 250.0}


async def test_tool_not_offered_means_no_call() -> None:
    response = await _fast().chat(
        _request("Please refund $40 for order 1234", tools=[_tool("lookup_order", "order_id")])
    )
    assert response.tool_calls == []
    assert response.finish_reason == "stop"


@pytest.mark.parametrize(
    ("text", "name", "arguments"),
    [
        ("where is my order 5521?", "lookup_order", {"order_id": "5521"}),
        ("I need a password reset for user:u-42", "reset_password", {"user_id": "u-42"}),
        ("The dashboard is down since this morning", "check_outage", {"service": "dashboard"}),
        ("please delete my account", "delete_account", {"user_id": "self"}),
    ],
)
async def test_intents_map_to_tools(text: str, name: str, arguments: dict[str, Any]) -> None:
    response = await _fast().chat(_request(text))
    assert [(c.name, c.arguments) for c in response.tool_calls] == [(name, arguments)]


async def test_final_answer_summarizes_tool_result() -> None:
    provider = _fast()
    first = await provider.chat(_request("Please refund $40 for order 1234"))
    extra = _tool_round(first, {"status": "issued", "ref": "R-7781"})
    final = await provider.chat(
        _request("Please refund $40 for order 1234", extra=extra, call_key="req-1:1")
    )
    assert final.finish_reason == "stop"
    assert final.tool_calls == []
    assert "Refund of $40.00 for order 1234 issued (ref R-7781)" in final.content


async def test_multi_step_lookup_then_refund() -> None:
    provider = _fast()
    text = "refund $40 for order 1234 and check order 1234"
    first = await provider.chat(_request(text))
    assert first.tool_calls[0].name == "lookup_order"
    extra = _tool_round(first, {"order_id": "1234", "status": "delivered"})
    second = await provider.chat(_request(text, extra=extra, call_key="req-1:1"))
    assert [(c.name, c.arguments) for c in second.tool_calls] == [
        ("issue_refund", {"order_id": "1234", "amount": 40.0})
    ]
    extra += _tool_round(second, {"status": "issued", "ref": "R-1"})
    final = await provider.chat(_request(text, extra=extra, call_key="req-1:2"))
    assert "Order 1234 is delivered" in final.content
    assert "Refund of $40.00 for order 1234 issued (ref R-1)" in final.content


async def test_loop_marker_repeats_the_same_call() -> None:
    provider = _fast()
    text = "[sim:loop] anything"
    first = await provider.chat(_request(text))
    extra = _tool_round(first, {"order_id": "1", "status": "shipped"})
    second = await provider.chat(_request(text, extra=extra, call_key="req-1:1"))
    extra += _tool_round(second, {"order_id": "1", "status": "shipped"})
    third = await provider.chat(_request(text, extra=extra, call_key="req-1:2"))
    calls = [(r.tool_calls[0].name, r.tool_calls[0].arguments) for r in (first, second, third)]
    assert calls == [("lookup_order", {"order_id": "1"})] * 3


async def test_429x2_fails_twice_then_succeeds() -> None:
    provider = _fast()
    request = _request("[sim:429x2] How do I change my plan?")
    for _ in range(2):
        with pytest.raises(RateLimited):
            await provider.chat(request)
    response = await provider.chat(request)
    assert response.finish_reason == "stop"
    assert "sim:" not in response.content
    assert provider.attempts("req-1:0") == 3


async def test_429x2_through_retries_counts_attempts() -> None:
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:
        delays.append(delay)

    outcome = await call_with_retries_outcome(
        _fast(), _request("[sim:429x2] hi"), attempts=3, sleep=no_sleep
    )
    assert outcome.attempts == 3
    assert outcome.errors == ("rate_limit", "rate_limit")
    assert len(delays) == 2
    assert 0.1 <= delays[0] < 0.2 and 0.2 <= delays[1] < 0.4


async def test_429_without_count_always_fails() -> None:
    provider = _fast()
    for _ in range(5):
        with pytest.raises(RateLimited):
            await provider.chat(_request("[sim:429] hi"))


async def test_timeout_marker_raises_after_bounded_sleep() -> None:
    provider = SimulatedProvider(SimulatorConfig(latency_ms_mean=5000.0))
    started = time.perf_counter()
    with pytest.raises(LLMTimeout):
        await provider.chat(_request("[sim:timeout] hi", timeout_s=0.05))
    assert time.perf_counter() - started < 1.0


async def test_latency_above_request_timeout_raises() -> None:
    started = time.perf_counter()
    with pytest.raises(LLMTimeout):
        await _fast().chat(_request("[sim:latency=2000] hi", timeout_s=0.05))
    assert time.perf_counter() - started < 1.0


async def test_latency_marker_sets_latency() -> None:
    response = await _fast().chat(_request("[sim:latency=20] hi"))
    assert response.latency_ms == 20.0


async def test_empty_marker() -> None:
    response = await _fast().chat(_request("[sim:empty] Please refund $40 for order 1234"))
    assert (response.content, response.tool_calls, response.finish_reason) == ("", [], "stop")


async def test_refuse_marker() -> None:
    response = await _fast().chat(_request("[sim:refuse] refund $40 for order 1234"))
    assert response.content == "I can't help with that."
    assert response.tool_calls == []


async def test_max_tokens_cap_truncates() -> None:
    full = await _fast().chat(_request("How do I change my plan?"))
    capped = await _fast().chat(_request("How do I change my plan?", max_tokens=5))
    assert full.output_tokens > 5
    assert capped.finish_reason == "length"
    assert capped.output_tokens == 5
    assert len(capped.content) <= 20
    assert full.content.startswith(capped.content)


async def test_token_counts_follow_chars() -> None:
    request = _request("How do I change my plan?")
    response = await _fast().chat(request)
    assert response.output_tokens == -(-len(response.content) // 4)
    chars = len(SYSTEM["content"]) + len("How do I change my plan?")
    chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in TOOLS)
    assert response.input_tokens == -(-chars // 4)


async def test_configured_rates_are_seeded() -> None:
    async def failures(seed: int) -> list[bool]:
        provider = SimulatedProvider(
            SimulatorConfig(seed=seed, latency_ms_mean=0.0, rate_limit_rate=0.5)
        )
        out = []
        for i in range(40):
            try:
                await provider.chat(_request("hi", call_key=f"k{i}"))
                out.append(False)
            except RateLimited:
                out.append(True)
        return out

    first, second = await failures(3), await failures(3)
    assert first == second
    assert 5 < sum(first) < 35


async def test_concurrent_calls_do_not_block() -> None:
    provider = SimulatedProvider(SimulatorConfig(latency_ms_mean=200.0, latency_ms_jitter=0.0))
    requests = [_request(f"question {i}", call_key=f"c{i}") for i in range(200)]
    started = time.perf_counter()
    responses = await asyncio.gather(*(provider.chat(r) for r in requests))
    elapsed = time.perf_counter() - started
    assert len(responses) == 200
    assert elapsed < 2.0  # sequential would take 40 s


async def test_spanish_input_gets_spanish_answer() -> None:
    response = await _fast().chat(_request("Hola, quiero saber por qué me cobraron dos veces"))
    assert response.content.startswith(("Hola", "Gracias"))
    assert "?" in response.content or "." in response.content


async def test_build_provider() -> None:
    provider = build_provider("simulator", seed=7, latency_ms_mean=0.0)
    assert isinstance(provider, SimulatedProvider)
    assert provider.config.seed == 7
    with pytest.raises(ValueError):
        build_provider("nope")
    with pytest.raises(ValueError):
        SimulatorConfig(rate_limit_rate=1.5)
