"""Reading a chat request the way the simulator needs it: the last user turn, its test markers
and the tool results that came back since."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from streams.llm.base import (
    ToolCall,
)

_MARKER_RE = re.compile(r"\[sim:([^\]]*)\]", re.IGNORECASE)


def text_of(content: Any) -> str:
    """Message content as text: plain strings or OpenAI content-part lists."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def call_fields(call: Any) -> tuple[str, str, dict[str, Any]]:
    """(id, name, arguments) of an assistant tool call in OpenAI or ToolCall shape."""
    if isinstance(call, ToolCall):
        return call.id, call.name, dict(call.arguments)
    if not isinstance(call, dict):
        return "", "", {}
    function = call.get("function")
    fn: dict[str, Any] = function if isinstance(function, dict) else call
    raw_args = fn.get("arguments", {})
    if isinstance(raw_args, str):
        try:
            raw_args = json.loads(raw_args) if raw_args.strip() else {}
        except json.JSONDecodeError:
            raw_args = {}
    args = raw_args if isinstance(raw_args, dict) else {}
    return str(call.get("id", "")), str(fn.get("name", "")), args


@dataclass
class ToolResult:
    name: str
    arguments: dict[str, Any]
    raw: str
    data: Any


@dataclass
class Turn:
    """The part of the conversation the simulator reacts to."""

    system: str = ""
    text: str = ""  # last user message, markers removed
    markers: list[str] = field(default_factory=list)
    called: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    has_user: bool = False


def parse_turn(messages: list[dict[str, Any]]) -> Turn:
    turn = Turn()
    for msg in messages:
        if msg.get("role") in ("system", "developer"):
            turn.system = text_of(msg.get("content"))
            break
    last_user = -1
    for i, msg in enumerate(messages):
        if msg.get("role") == "user":
            last_user = i
    if last_user < 0:
        return turn
    turn.has_user = True
    raw = text_of(messages[last_user].get("content"))
    turn.markers = [m.strip().lower() for m in _MARKER_RE.findall(raw)]
    turn.text = re.sub(r"\s+", " ", _MARKER_RE.sub(" ", raw)).strip()

    calls_by_id: dict[str, tuple[str, dict[str, Any]]] = {}
    for msg in messages[last_user + 1 :]:
        if msg.get("role") == "assistant":
            for call in msg.get("tool_calls") or []:
                call_id, name, args = call_fields(call)
                if name:
                    turn.called.append((name, args))
                    calls_by_id[call_id] = (name, args)
        elif msg.get("role") == "tool":
            name, args = calls_by_id.get(str(msg.get("tool_call_id", "")), ("", {}))
            name = name or str(msg.get("name", "")) or "tool"
            raw_result = text_of(msg.get("content"))
            try:
                data: Any = json.loads(raw_result)
            except (json.JSONDecodeError, TypeError):
                data = raw_result
            turn.results.append(ToolResult(name, args, raw_result, data))
    return turn
