"""Step values as the agent loop stores them, for tests of the loop and of what it holds."""

import json

from streams.state.model import StepState, StepStatus


def llm(index: int, content: str = "", calls: list[dict] | None = None, status: StepStatus = "ok") -> StepState:
    result = json.dumps({"content": content, "tool_calls": calls or []})
    return StepState(index=index, kind="llm_call", name="m", result=result, input_tokens=1,
                     output_tokens=1, latency_ms=1.0, status=status)


def tool(index: int, name: str, args: dict, call_id: str, status: StepStatus = "done") -> list[StepState]:
    a = json.dumps(args, sort_keys=True, separators=(",", ":"))
    call = StepState(index=index, kind="tool_call", name=name, arguments=a, result=call_id,
                     idempotency_key="k", status=status)
    res = StepState(index=index + 1, kind="tool_result", name=call_id, result="{}", status="ok",
                    idempotency_key="k")
    return [call, res] if status == "done" else [call]
