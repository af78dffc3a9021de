"""The shapes of the state in the `sessions` table: session, task, step and hold.

They are `msgspec.Struct`s: typed classes (mypy checks every field, statuses are `Literal`s, so
a misspelt one is a type error rather than a task that never finishes) that convert to and from
the changelog's JSON only at the table boundary (`streams.state.sessions.dump` / `load`), where
a value that does not match these declarations is refused with the field it got wrong.
msgspec rather than dataclasses plus a JSON library: one call encodes or decodes and validates a
whole session, at the speed orjson gave the untyped dicts (`bench/bench_state_codec.py`).

Field order is part of the format: a session's JSON starts with its numeric fields and its
queue, before any text a user wrote, so the table scans (`streams.state.store`) can tell an idle
or empty session from the first bytes without a user's text fooling them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

StepKind = Literal["llm_call", "tool_call", "tool_result", "hold", "review"]
"""`llm_call` (the model's answer or tool calls), `tool_call` (a call started or done; `result`
is the call id), `tool_result` (`name` is the call id), `hold` (a call held for a human),
`review` (a human's decision: `name` is the call id, or `answer` for a held answer)."""

StepStatus = Literal[
    "ok", "fallback", "degraded",  # llm_call (fallback: breaker open; degraded: retries spent)
    "started", "done",  # tool_call
    "error",  # tool_result (the tool reported an error), or an llm_call that failed
    "held",  # hold
    "approved", "edited", "rejected",  # review
]

Outcome = Literal["ok", "escalated", "error", "degraded", "fallback", "blocked"]
"""How a task run ended (the response status before the verifier)."""

TaskStatus = Literal["queued", "running", "ok", "escalated", "error", "degraded", "fallback", "blocked"]

RoutedValue = dict[str, Any]
"""A routed request (`streams.events.records.Routed`) as its JSON object: kept as the event
carried it, so a task resumed by a newer version still has every field the router wrote."""


class StepState(msgspec.Struct, kw_only=True):
    """One recorded step of a task, shaped like the Avro `Step` (plus `call_id` on holds)."""

    index: int
    kind: StepKind
    name: str = ""
    arguments: str = ""
    result: str = ""
    status: StepStatus = "ok"
    idempotency_key: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    call_id: str = ""


class Task(msgspec.Struct, kw_only=True):
    """A request taken in by a session: queued, then running step by step, then history."""

    request_id: str
    status: TaskStatus = "queued"
    follow_up: int = 0  # n-th resumption after a human decision (0: the first run)
    counted_from: int = 0  # steps before this index were settled with an earlier run
    failures: int = 0  # runs of this task that crashed; at the limit it is answered `error`
    traceparent: str = ""
    routed: RoutedValue
    steps: list[StepState] = msgspec.field(default_factory=list)


class HeldTask(msgspec.Struct, kw_only=True):
    """What a decision needs to resume a held task."""

    routed: RoutedValue
    steps: list[StepState]
    traceparent: str = ""


class DecisionRecord(msgspec.Struct, kw_only=True):
    decision_id: str = ""
    decision: str = ""
    reviewer: str = ""
    note: str = ""
    decided_ms: str | int = ""


class HoldSpec(msgspec.Struct, kw_only=True):
    """What a finished task leaves for a human: a held tool call (`kind` `hold`, recorded as a
    step too) or a held answer (`kind` `answer`, with the draft)."""

    kind: Literal["hold", "answer"]
    index: int = 0
    name: str = ""
    arguments: str = ""
    result: str = ""
    status: StepStatus = "held"
    call_id: str = ""
    draft: str = ""

    def as_step(self) -> StepState:
        """The `hold` step a held tool call leaves in its task."""
        return StepState(
            index=self.index, kind="hold", name=self.name, arguments=self.arguments,
            result=self.result, status=self.status, call_id=self.call_id,
        )


class Hold(HoldSpec, kw_only=True):
    """A hold in the session: pending until a human decides, then kept for the record."""

    request_id: str = ""
    pending: bool = False
    follow_up: int = 0
    held_ms: int = 0
    task: HeldTask | None = None  # until decided
    decision: DecisionRecord | None = None  # once decided


class Finished(msgspec.Struct, kw_only=True):
    """A finished task as its session remembers it: what the refund window needs, and a line of
    record. Its steps are in `agentstream.executed.v1` and its trace, not in the session value,
    which every step of later tasks writes whole: with full tasks kept here, a session at its
    history cap wrote ~40 kB per step and answered at half the rate of a new one."""

    request_id: str
    status: TaskStatus
    created_ms: int = 0
    finished_ms: int = 0
    steps: int = 0
    refunded: float = 0.0  # the refunds its tool calls executed


class Turn(msgspec.Struct):
    role: str
    content: str
    request_id: str = ""


class Trimmed(msgspec.Struct):
    entries: int = 0
    bytes: int = 0


class Session(msgspec.Struct, kw_only=True):
    """One session's value in the `sessions` table."""

    expires_ms: int = 0
    last_activity_ms: int = 0
    epoch: int = 0  # owner epoch of the worker that wrote it (zombie fencing)
    queue: list[Task] = msgspec.field(default_factory=list)
    session_id: str
    user_id: str
    tenant_id: str
    conversation: list[Turn] = msgspec.field(default_factory=list)
    history: list[Task] = msgspec.field(default_factory=list)  # whole tasks, as finished before `finished` existed
    finished: list[Finished] = msgspec.field(default_factory=list)
    holds: list[Hold] = msgspec.field(default_factory=list)
    handled: dict[str, int] = msgspec.field(default_factory=dict)  # request id -> taken in (ms), kept for the dedup window
    trimmed: Trimmed | None = None
