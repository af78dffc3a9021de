"""Answers LLM calls from a recording, so a replay reproduces every decision exactly.

Recordings come from the `steps` of `agentstream.executed.v1` events: one entry per LLM call, keyed
by the same `call_key` (`<request id>:<step index>`) the runner uses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from streams.llm.base import (
    ChatRequest,
    ChatResponse,
    LLMError,
    LLMTimeout,
    ProviderUnavailable,
    RateLimited,
    ToolCall,
)

FAILURES: dict[str, type[LLMError]] = {
    "rate_limit": RateLimited,
    "timeout": LLMTimeout,
    "unavailable": ProviderUnavailable,
}


class MissingRecording(LLMError):
    kind = "missing_recording"


class RecordedProvider:
    name = "recorded"

    def __init__(self, recordings: dict[str, dict[str, Any]]) -> None:
        self.recordings = recordings

    @classmethod
    def from_file(cls, path: Path) -> RecordedProvider:
        return cls(json.loads(Path(path).read_text()))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        rec = self.recordings.get(request.call_key)
        if rec is None:
            raise MissingRecording(f"no recorded answer for call {request.call_key}")
        if rec["status"] != "ok":
            # The original call failed after its retries; fail the same way, with the same kind.
            match = re.match(r"LLM (\w+) after", rec["result"])
            kind = match.group(1) if match else "llm_error"
            raise FAILURES.get(kind, LLMError)(f"recorded failure: {rec['result']}")
        data = json.loads(rec["result"])
        return ChatResponse(
            content=data.get("content", ""),
            tool_calls=[ToolCall(c["id"], c["name"], c["arguments"]) for c in data.get("tool_calls", [])],
            finish_reason=data.get("finish_reason", "stop"),
            input_tokens=int(rec["input_tokens"]),
            output_tokens=int(rec["output_tokens"]),
            model=request.model,
            provider=self.name,
            latency_ms=0.0,
        )

    async def aclose(self) -> None:
        return None


def recordings_from_steps(request_id: str, steps: list[Any]) -> dict[str, dict[str, Any]]:
    """The LLM-call steps of one executed request, keyed by call key."""
    return {
        f"{request_id}:{s.index}": {
            "status": s.status,
            "result": s.result,
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
        }
        for s in steps
        if s.kind == "llm_call"
    }
