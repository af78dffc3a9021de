"""Seeded, deterministic LLM simulator: the default backend, so the pipeline runs without keys.

Every choice (answer wording, latency, tool-call ids, injected faults) is drawn from
``blake2b(f"{seed}|{call_key}|{fingerprint}|{purpose}")`` where ``fingerprint`` hashes the
request content (model, messages, offered tool names) and never the attempt number.
Replaying the same request therefore yields the same response on any machine and process
(no ``hash()``, no global ``random``).

Injected *faults* (``rate_limit_rate``, ``timeout_rate``, ``empty_rate`` and the ``[sim:429xN]``
marker) additionally use the per-``call_key`` attempt counter kept in the provider instance as
the ``purpose`` suffix: a retried call then gets a fresh, still deterministic, draw. Without
that, a 5 % rate-limit rate would mean 5 % of calls can never succeed, which is not how rate
limits behave.

Test hooks (markers in the last user message, removed before the text is interpreted):

* ``[sim:429]`` always RateLimited; ``[sim:429xN]`` RateLimited on the first N attempts.
* ``[sim:timeout]`` LLMTimeout after sleeping ``min(timeout_s, latency)``.
* ``[sim:empty]`` empty content, finish "stop".
* ``[sim:loop]`` always the same tool call with the same arguments, even after results.
* ``[sim:refuse]`` "I can't help with that."
* ``[sim:latency=MS]`` fixed latency in milliseconds (no jitter).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from streams.llm.base import (
    ChatRequest,
    ChatResponse,
    LLMTimeout,
    ProviderUnavailable,
    RateLimited,
    ToolCall,
)
from streams.llm.simulator.draws import Draws, request_fingerprint
from streams.llm.simulator.intents import loop_call, plan_calls
from streams.llm.simulator.parsing import Turn, parse_turn, text_of
from streams.llm.simulator.phrasing import CLOSINGS, plain_answer, summarize

REFUSAL = "I can't help with that."
# Attempt counters are per call_key; bound them so a long-running worker does not leak.
_MAX_TRACKED_KEYS = 100_000


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of the simulator; rates are probabilities in [0, 1], jitter is relative to the mean."""

    seed: int = 0
    latency_ms_mean: float = 300.0
    latency_ms_jitter: float = 0.3
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    empty_rate: float = 0.0
    # Fault drills: while this file exists every call fails fast as a provider outage.
    outage_file: str = ""
    # Appends one line per call ("<ms> ok|unavailable"), so a drill can count what the provider saw.
    calls_log: str = ""
    # model name -> share of calls that fail as "provider unavailable"; sticky per call, so the
    # retries of a failed call fail too (a bad model version, not a blip).
    model_failure_rates: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency_ms_mean < 0:
            raise ValueError("latency_ms_mean must be >= 0")
        if not 0.0 <= self.latency_ms_jitter <= 1.0:
            raise ValueError("latency_ms_jitter must be within [0, 1]")
        for name in ("rate_limit_rate", "timeout_rate", "empty_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        for model, rate in self.model_failure_rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"failure rate of {model} must be within [0, 1], got {rate}")





def _ceil_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _input_chars(request: ChatRequest) -> int:
    total = 0
    for msg in request.messages:
        total += len(text_of(msg.get("content")))
        if msg.get("tool_calls"):
            total += len(json.dumps(msg["tool_calls"], default=str, ensure_ascii=False))
    for tool in request.tools:
        total += len(tool.name) + len(tool.description)
        total += len(json.dumps(tool.parameters, ensure_ascii=False))
    return total


class SimulatedProvider:
    """Deterministic stand-in for an OpenAI-style chat model (function calling included).

    Safe to share across hundreds of concurrent calls: latency is an ``asyncio.sleep`` and the
    only mutable state is the per-``call_key`` attempt counter used by fault injection.
    ``ChatResponse.latency_ms`` is the simulated latency, so responses compare equal on replay.
    """

    name = "simulator"

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._attempts: OrderedDict[str, int] = OrderedDict()

    def attempts(self, call_key: str) -> int:
        """How many times `chat` has been called with this call_key (for tests/diagnostics)."""
        return self._attempts.get(call_key, 0)

    async def aclose(self) -> None:
        """Nothing to release; present so callers can close any provider uniformly."""

    def _next_attempt(self, key: str) -> int:
        count = self._attempts.pop(key, 0) + 1
        self._attempts[key] = count
        while len(self._attempts) > _MAX_TRACKED_KEYS:
            self._attempts.popitem(last=False)
        return count

    def _latency_s(self, draws: Draws, markers: list[str]) -> float:
        for marker in markers:
            if marker.startswith("latency="):
                try:
                    return max(0.0, float(marker.split("=", 1)[1])) / 1000.0
                except ValueError:
                    pass
        cfg = self.config
        spread = cfg.latency_ms_jitter * (2.0 * draws.unit("latency") - 1.0)
        return max(0.0, cfg.latency_ms_mean * (1.0 + spread)) / 1000.0

    @staticmethod
    def _rate_limited_attempts(markers: list[str]) -> int | None:
        """N for `[sim:429xN]`, a huge number for `[sim:429]`, None when absent."""
        for marker in markers:
            match = re.fullmatch(r"429(?:x(\d+))?", marker)
            if match:
                return int(match.group(1)) if match.group(1) else 2**62
        return None

    def _log_call(self, outcome: str) -> None:
        if self.config.calls_log:
            with open(self.config.calls_log, "a", encoding="utf-8") as fh:
                fh.write(f"{int(time.time() * 1000)} {outcome}\n")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        cfg = self.config
        turn = parse_turn(request.messages)
        fingerprint = request_fingerprint(request)
        draws = Draws(cfg.seed, request.call_key, fingerprint)
        attempt = self._next_attempt(request.call_key or fingerprint)
        markers = turn.markers
        latency_s = self._latency_s(draws, markers)
        timeout_s = max(0.0, request.timeout_s)

        if cfg.outage_file and os.path.exists(cfg.outage_file):
            self._log_call("unavailable")
            raise ProviderUnavailable("simulator: provider outage (drill)")
        if draws.unit("model_failure") < cfg.model_failure_rates.get(request.model, 0.0):
            self._log_call("unavailable")
            raise ProviderUnavailable(f"simulator: model {request.model} failed this call")
        self._log_call("ok")
        limit = self._rate_limited_attempts(markers)
        if (limit is not None and attempt <= limit) or (
            draws.unit(f"rate_limit|{attempt}") < cfg.rate_limit_rate
        ):
            # Real 429s come back fast, so no latency is simulated here.
            raise RateLimited(f"simulator: rate limited (attempt {attempt})")
        if "timeout" in markers or draws.unit(f"timeout|{attempt}") < cfg.timeout_rate:
            await asyncio.sleep(min(timeout_s, latency_s))
            raise LLMTimeout(f"simulator: timed out (attempt {attempt})")
        if latency_s > timeout_s:
            await asyncio.sleep(timeout_s)
            raise LLMTimeout(
                f"simulator: latency {latency_s * 1000:.0f} ms exceeds timeout {timeout_s:g} s"
            )

        await asyncio.sleep(latency_s)
        empty = "empty" in markers or draws.unit(f"empty|{attempt}") < cfg.empty_rate
        return self._respond(request, turn, draws, empty, latency_s * 1000.0)

    def _respond(
        self, request: ChatRequest, turn: Turn, draws: Draws, empty: bool, latency_ms: float
    ) -> ChatResponse:
        cap = max(0, request.max_tokens)

        def reply(
            content: str, tool_calls: list[ToolCall], finish: str, output_tokens: int
        ) -> ChatResponse:
            return ChatResponse(
                content=content,
                tool_calls=tool_calls,
                finish_reason=finish,
                input_tokens=_ceil_tokens(_input_chars(request)),
                output_tokens=output_tokens,
                model=request.model,
                provider=self.name,
                latency_ms=latency_ms,
            )

        def tool_reply(name: str, args: dict[str, Any], index: int) -> ChatResponse:
            call = ToolCall(
                id="call_" + draws.hex(f"tool|{index}|{name}"), name=name, arguments=args
            )
            tokens = _ceil_tokens(len(name) + len(json.dumps(args, ensure_ascii=False)))
            if tokens > cap:
                # A real model cut off mid-call yields no usable call.
                return reply("", [], "length", cap)
            return reply("", [call], "tool_calls", tokens)

        if "jailbreak classifier" in turn.system:
            # Standing in for a guard model: the rule screen's score, phrased as a model would.
            from streams.stages.routing.screening import RuleScreen

            user: dict[str, Any] = next((m for m in reversed(request.messages) if m.get("role") == "user"), {})
            score = RuleScreen().assess(text_of(user.get("content"))).score
            content = json.dumps({"attack_probability": round(score, 3)})
            return reply(content, [], "stop", _ceil_tokens(len(content)))
        text: str
        if "refuse" in turn.markers:
            text = REFUSAL
        elif empty:
            return reply("", [], "stop", 0)
        else:
            offered = {t.name for t in request.tools}
            loop = loop_call(request.tools) if "loop" in turn.markers else None
            plan, needs_order = plan_calls(turn.text, offered)
            called = {name for name, _ in turn.called}
            pending = [(name, args) for name, args in plan if name not in called]
            if loop is not None:
                return tool_reply(loop[0], loop[1], len(turn.called))
            if pending:
                return tool_reply(pending[0][0], pending[0][1], len(turn.called))
            if turn.results:
                summary = " ".join(summarize(r) for r in turn.results)
                text = f"{summary} {draws.pick('closing', CLOSINGS)}"
            else:
                text = plain_answer(turn, draws, needs_order)

        tokens = _ceil_tokens(len(text))
        if tokens > cap:
            text = text[: cap * 4]
            return reply(text, [], "length", _ceil_tokens(len(text)))
        return reply(text, [], "stop", tokens)
