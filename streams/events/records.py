"""Event dataclasses: plain data mirroring `schemas/<name>.v1.avsc` field for field, in order.

They carry no Kafka or codec logic so every stage (and tests) can build events cheaply;
`streams.events.codecs` turns them into Avro single-object bytes using each class's `SCHEMA`.
Classes are keyword-only because the schemas put a defaulted `schema_version` first.
`tests/unit/test_records_schemas.py` keeps the field lists in lock-step with the .avsc files.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the unit of every `*_ms` field."""
    return time.time_ns() // 1_000_000


class Identity(TypedDict):
    """Who a request belongs to: copied onto every event made for it."""

    request_id: str
    session_id: str
    user_id: str
    tenant_id: str


class Decided(TypedDict):
    """What the router decided for a request: carried by every later event and the response."""

    domain: str
    model: str
    language: str
    rollout_arm: str
    config_version: str


def _field(ev: Any, name: str) -> str:
    return str(ev[name] if isinstance(ev, dict) else getattr(ev, name))


def identity_of(ev: Any) -> Identity:
    """The identity fields of any request-derived event (or a routed-task dict)."""
    get = functools.partial(_field, ev)
    return Identity(
        request_id=get("request_id"), session_id=get("session_id"), user_id=get("user_id"), tenant_id=get("tenant_id")
    )


def decided_of(ev: Any) -> Decided:
    """The router's decision fields of a routed or executed event (or a routed-task dict)."""
    get = functools.partial(_field, ev)
    return Decided(
        domain=get("domain"), model=get("model"), language=get("language"),
        rollout_arm=get("rollout_arm"), config_version=get("config_version"),
    )


@dataclass(slots=True, kw_only=True)
class ContextMessage:
    """One prior chat turn (`role` is user/assistant/system/tool)."""

    role: str
    content: str


@dataclass(slots=True, kw_only=True)
class Request:
    """A user request as it enters the pipeline, unsanitized."""

    SCHEMA: ClassVar[str] = "request"

    schema_version: int = 1
    request_id: str
    session_id: str
    user_id: str
    tenant_id: str = "default"
    text: str
    context: list[ContextMessage] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    created_ms: int


@dataclass(slots=True, kw_only=True)
class Routed:
    """The request after sanitization and routing (model, budget, rollout arm)."""

    SCHEMA: ClassVar[str] = "routed"

    schema_version: int = 1
    request_id: str
    session_id: str
    user_id: str
    tenant_id: str
    text: str
    language: str
    domain: str
    model: str
    max_tokens: int
    complexity: str
    rollout_arm: str
    config_version: str
    notes: list[str] = field(default_factory=list)
    context: list[ContextMessage] = field(default_factory=list)
    created_ms: int
    routed_ms: int


@dataclass(slots=True, kw_only=True)
class Step:
    """One agent-loop step; `kind` is llm_call / tool_call / tool_result / hold / review."""

    index: int
    kind: str
    name: str = ""
    arguments: str = ""  # JSON text
    result: str = ""  # JSON text or answer text
    idempotency_key: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    status: str = "ok"


@dataclass(slots=True, kw_only=True)
class Executed:
    """Outcome of the agent loop with its full step trace and token usage."""

    SCHEMA: ClassVar[str] = "executed"

    schema_version: int = 3
    request_id: str
    session_id: str
    user_id: str
    tenant_id: str
    language: str
    domain: str
    model: str
    rollout_arm: str
    config_version: str
    status: str
    answer: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    input_tokens: int
    output_tokens: int
    llm_calls: int
    created_ms: int
    executed_ms: int
    complexity: str = ""
    follow_up: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True, kw_only=True)
class Response:
    """Final user-visible outcome; `status` is ok/escalated/blocked/error/degraded/fallback."""

    SCHEMA: ClassVar[str] = "response"

    schema_version: int = 2
    request_id: str
    session_id: str
    user_id: str
    tenant_id: str = "default"
    status: str
    reason: str
    answer: str = ""
    domain: str = ""
    model: str = ""
    language: str = ""
    rollout_arm: str = ""
    config_version: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    created_ms: int
    responded_ms: int
    latency_ms: float = 0.0
    # 0: the request's answer; n: the answer after the n-th human decision on it. Exactly one
    # response per (request_id, follow_up) reaches the responses topic.
    follow_up: int = 0
    cost_usd: float = 0.0

    def answer_key(self) -> str:
        """What the responder deduplicates on."""
        return self.request_id if not self.follow_up else f"{self.request_id}#{self.follow_up}"


@dataclass(slots=True, kw_only=True)
class Escalation:
    """A request held for human review; `held_action` is the held tool call as JSON."""

    SCHEMA: ClassVar[str] = "escalation"

    schema_version: int = 2
    request_id: str
    session_id: str
    user_id: str
    tenant_id: str
    domain: str
    reasons: list[str]
    draft_answer: str = ""
    held_action: str = ""
    created_ms: int
    escalated_ms: int
    priority: str = "normal"  # high | normal
    follow_up: int = 0


@dataclass(slots=True, kw_only=True)
class HumanDecision:
    """A reviewer's verdict on an escalation; `decision` is approve/edit/reject."""

    SCHEMA: ClassVar[str] = "human_decision"

    schema_version: int = 2
    request_id: str
    session_id: str
    reviewer: str
    decision: str
    edited_answer: str = ""
    note: str = ""
    decided_ms: int
    decision_id: str = ""
    edited_arguments: str = ""  # JSON object text, for an edited tool call
    follow_up: int = 0  # the escalation round this decides


@dataclass(slots=True, kw_only=True)
class DeadLetter:
    """An unprocessable Kafka record kept verbatim (key/value bytes) for replay."""

    SCHEMA: ClassVar[str] = "dead_letter"

    schema_version: int = 1
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes
    reason: str
    failed_ms: int

    @classmethod
    def of(
        cls, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, reason: str
    ) -> DeadLetter:
        """A dead letter for one record, its value cut to `MAX_DEAD_VALUE_BYTES` (said in the reason)."""
        if len(value) > MAX_DEAD_VALUE_BYTES:
            reason += f" (value truncated from {len(value)} to {MAX_DEAD_VALUE_BYTES} bytes)"
            value = value[:MAX_DEAD_VALUE_BYTES]
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            reason=reason,
            failed_ms=now_ms(),
        )


# A dead letter carries the original bytes, but never more than this: what the pipeline
# produces must stay under the producer's 1 MB request limit, whatever it was sent.
MAX_DEAD_VALUE_BYTES = 256 * 1024


@dataclass(slots=True, kw_only=True)
class SpanEvent:
    """A timestamped event inside a span."""

    time_unix_nano: int
    name: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class SpanLink:
    """A link from a span to another span."""

    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Span:
    """An OpenTelemetry span on its way over Kafka; attribute values are stringified."""

    SCHEMA: ClassVar[str] = "span"

    schema_version: int = 1
    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str = ""
    trace_state: str = ""
    name: str
    kind: str  # Internal | Server | Client | Producer | Consumer | Unspecified
    service_name: str
    resource_attributes: dict[str, str] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, str] = field(default_factory=dict)
    status_code: str = "Unset"  # Unset | Ok | Error
    status_message: str = ""
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class SpanBatch:
    """The spans of one session that one export finished together, as one Kafka message."""

    SCHEMA: ClassVar[str] = "span_batch"

    schema_version: int = 1
    spans: list[Span]


@dataclass(slots=True, kw_only=True)
class Control:
    """Operator state every worker applies without a restart (latest per `name` wins)."""

    SCHEMA: ClassVar[str] = "control"

    schema_version: int = 1
    name: str
    percent: int
    candidate_version: str = ""
    paused: bool = False
    promoted: bool = False
    reason: str = ""
    actor: str = ""
    updated_ms: int

    def candidate_share(self) -> int:
        """The percentage of users actually served by the candidate now."""
        if self.paused:
            return 0
        return 100 if self.promoted else max(0, min(100, self.percent))


@dataclass(slots=True, kw_only=True)
class BudgetEvent:
    """A reservation before the first LLM call, a charge of one recorded LLM call (`settle_id`
    is then `run@step`), or the settlement of what a task run used."""

    SCHEMA: ClassVar[str] = "budget_event"

    schema_version: int = 1
    kind: str  # reserve | charge | settle
    request_id: str
    session_id: str
    user_id: str
    tenant_id: str
    settle_id: str = ""
    routed: bytes = b""
    tokens: int = 0
    cost_usd: float = 0.0
    cheaper_tokens: int = 0
    cheaper_cost_usd: float = 0.0
    cheaper_model: str = ""
    created_ms: int


@dataclass(slots=True, kw_only=True)
class WorkerStatus:
    """A worker's heartbeat: its partitions, circuit breakers and running tasks."""

    SCHEMA: ClassVar[str] = "worker_status"

    schema_version: int = 1
    worker_id: str
    host: str
    pid: int
    started_ms: int
    partitions: list[int] = field(default_factory=list)
    breakers: dict[str, str] = field(default_factory=dict)
    running_tasks: int = 0
    updated_ms: int


EVENT_TYPES: tuple[type[Any], ...] = (
    Request,
    Routed,
    Executed,
    Response,
    Escalation,
    HumanDecision,
    DeadLetter,
    Span,
    SpanBatch,
    Control,
    BudgetEvent,
    WorkerStatus,
)
"""Every top-level event class, one per schema."""

BY_SCHEMA: dict[str, type[Any]] = {cls.SCHEMA: cls for cls in EVENT_TYPES}
"""Schema short name -> event class."""
