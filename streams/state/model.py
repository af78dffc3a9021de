"""The shapes of the state in the `sessions` table: session, task, step and hold.

They are TypedDicts, so the values stay the JSON objects the changelog carries (any consumer,
and `agentstream session`, reads them as they are) and cost nothing to convert on the step hot
path, while mypy (strict) checks every key and every status against these declarations.
Statuses are `Literal`s: a misspelt one is a type error, not a task that never finishes.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

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
"""A routed request (`streams.events.records.Routed`) as its JSON object."""


class StepState(TypedDict):
    """One recorded step of a task, shaped like the Avro `Step` (plus `call_id` on holds)."""

    index: int
    kind: StepKind
    name: str
    arguments: str
    result: str
    status: StepStatus
    idempotency_key: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    call_id: NotRequired[str]


class Task(TypedDict):
    """A request taken in by a session: queued, then running step by step, then history."""

    request_id: str
    routed: RoutedValue
    status: TaskStatus
    steps: list[StepState]
    traceparent: str
    follow_up: NotRequired[int]  # n-th resumption after a human decision (0: the first run)
    counted_from: NotRequired[int]  # steps before this index were settled with an earlier run
    failures: NotRequired[int]  # runs of this task that crashed; at the limit it is answered `error`


class HeldTask(TypedDict):
    """What a decision needs to resume a held task."""

    routed: RoutedValue
    steps: list[StepState]
    traceparent: NotRequired[str]


class DecisionRecord(TypedDict):
    decision_id: str
    decision: str
    reviewer: str
    note: str
    decided_ms: str | int


class HoldSpec(TypedDict, total=False):
    """What a finished task leaves for a human: a held tool call (a `hold` step) or a held
    answer (`kind` `answer`, with the draft)."""

    index: int
    kind: Literal["hold", "answer"]
    name: str
    arguments: str
    result: str
    status: StepStatus
    call_id: str
    draft: str
    idempotency_key: str
    input_tokens: int
    output_tokens: int
    latency_ms: float


class Hold(HoldSpec, total=False):
    """A hold in the session: pending until a human decides, then kept for the record."""

    request_id: str
    pending: bool
    follow_up: int
    held_ms: int
    task: HeldTask
    decision: DecisionRecord


class Turn(TypedDict):
    role: str
    content: str
    request_id: str


class Trimmed(TypedDict):
    entries: int
    bytes: int


class Session(TypedDict):
    """One session's value in the `sessions` table."""

    session_id: str
    user_id: str
    tenant_id: str
    conversation: list[Turn]
    queue: list[Task]
    history: list[Task]
    holds: list[Hold]
    handled: dict[str, int]  # request id -> taken in (ms), kept for the dedup window
    last_activity_ms: int
    expires_ms: int
    epoch: NotRequired[int]  # owner epoch of the worker that wrote it (zombie fencing)
    trimmed: NotRequired[Trimmed]
