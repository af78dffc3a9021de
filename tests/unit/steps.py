"""Step values as the agent loop stores them, for tests of the loop and of what it holds."""

import json


def llm(index: int, content: str = "", calls: list[dict] | None = None, status: str = "ok") -> dict:
    result = json.dumps({"content": content, "tool_calls": calls or []})
    return {"index": index, "kind": "llm_call", "name": "m", "arguments": "", "result": result,
            "idempotency_key": "", "input_tokens": 1, "output_tokens": 1, "latency_ms": 1.0,
            "status": status}


def tool(index: int, name: str, args: dict, call_id: str, status: str = "done") -> list[dict]:
    a = json.dumps(args, sort_keys=True, separators=(",", ":"))
    call = {"index": index, "kind": "tool_call", "name": name, "arguments": a, "result": call_id,
            "idempotency_key": "k", "input_tokens": 0, "output_tokens": 0, "latency_ms": 0.0,
            "status": status}
    res = {**call, "index": index + 1, "kind": "tool_result", "name": call_id, "arguments": "",
           "result": "{}", "status": "ok"}
    return [call, res] if status == "done" else [call]
