"""Span -> ClickHouse row mapping, one function per table (pure, no I/O).

Span attributes arrive as strings (numbers as text, lists as JSON), written by code we do not
control at read time, so every conversion here is total: a malformed value becomes a neutral
default, never an exception that would stall the sink on one bad span.
Rows are lists in the order of the matching `*_COLUMNS` tuple, ready for a columnar insert.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from streams.events.records import Span
from streams.telemetry import attributes as attr

__all__ = [
    "CONTENT_ATTRIBUTES",
    "DECISION_COLUMNS",
    "LLM_CALL_COLUMNS",
    "OTEL_TRACES_COLUMNS",
    "REPLAY_REPORT_COLUMNS",
    "REPLAY_REPORT_MARK",
    "Redact",
    "decision_row",
    "is_chat_span",
    "is_final_decision",
    "llm_call_row",
    "otel_traces_row",
    "redact_span",
    "replay_report_row",
]

Redact = Callable[[str], str]

OTEL_TRACES_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)

LLM_CALL_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "trace_id",
    "span_id",
    "request_id",
    "session_id",
    "user_id",
    "tenant_id",
    "domain",
    "provider",
    "model",
    "response_model",
    "step_index",
    "max_tokens",
    "prompt",
    "response",
    "finish_reasons",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "status",
    "error_type",
    "context_trimmed",
    "trimmed_chars",
    "config_version",
    "rollout_arm",
)

DECISION_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "trace_id",
    "span_id",
    "request_id",
    "session_id",
    "user_id",
    "tenant_id",
    "route",
    "model",
    "rollout_arm",
    "verdict",
    "reasons",
    "escalated",
    "status",
    "reason",
    "language",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "llm_calls",
    "config_version",
    "complexity",
)

REPLAY_REPORT_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "report_id",
    "mode",
    "namespace",
    "source_namespace",
    "requests",
    "identical",
    "agreement",
    "status_agreement",
    "cost_original_usd",
    "cost_replay_usd",
    "llm_latency_p95_original_ms",
    "llm_latency_p95_replay_ms",
    "escalations_original",
    "escalations_replay",
    "skipped_unanswered",
    "original_version",
    "replay_version",
    "differing",
)
# The attribute that marks the one span of a replay run carrying its report (streams/replay/report.py).
REPLAY_REPORT_MARK = attr.AGENTSTREAM_REPLAY_REPORT

# Attributes that carry prompt/answer content: redacted again here (defence in depth; the tracing
# code redacts before emitting) so personal data never reaches ClickHouse.
CONTENT_ATTRIBUTES = frozenset(
    {
        attr.GEN_AI_INPUT_MESSAGES,
        attr.GEN_AI_OUTPUT_MESSAGES,
        attr.GEN_AI_SYSTEM_INSTRUCTIONS,
        attr.GEN_AI_TOOL_CALL_ARGUMENTS,
        attr.GEN_AI_TOOL_CALL_RESULT,
    }
)

_UINT16_MAX = 2**16 - 1
_UINT32_MAX = 2**32 - 1


def _uint(value: str | None, limit: int = _UINT32_MAX) -> int:
    """A non-negative int from text like "12", "12.0" or " 12 "; 0 if it is not one."""
    if not value:
        return 0
    try:
        number = int(value)
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            return 0
        number = int(f) if math.isfinite(f) else 0
    return min(max(number, 0), limit)


def _float(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        f = float(value)
    except ValueError:
        return 0.0
    return f if math.isfinite(f) else 0.0


def _flag(value: str | None) -> int:
    return 1 if (value or "").strip().lower() in ("true", "1", "yes") else 0


def _str_list(value: str | None) -> list[str]:
    """A JSON list of strings; a bare non-JSON value becomes a one-item list."""
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return [value]
    if isinstance(parsed, list):
        return [x if isinstance(x, str) else json.dumps(x) for x in parsed]
    return [parsed if isinstance(parsed, str) else json.dumps(parsed)]


_CONTENT_KEYS = tuple(CONTENT_ATTRIBUTES)


def _has_content(attributes: Mapping[str, str]) -> bool:
    return any(map(attributes.__contains__, _CONTENT_KEYS))


def _redacted(attributes: Mapping[str, str], redact: Redact | None) -> Mapping[str, str]:
    """Redacted copy if needed, else the mapping itself (rows never mutate it)."""
    if redact is None or not _has_content(attributes):
        return attributes
    return {k: redact(v) if k in CONTENT_ATTRIBUTES else v for k, v in attributes.items()}


def redact_span(span: Span, redact: Redact) -> Span:
    """`span` with its content attributes (and the decision's reasons) redacted, once, for all
    three row mappers; the span itself is left untouched (a copy is returned if anything
    needs redacting)."""
    a = span.attributes
    final = is_final_decision(span)
    if not (_has_content(a) or final or any(_has_content(e.attributes) for e in span.events)):
        return span
    attributes = dict(_redacted(a, redact))
    if final:
        for key in (attr.AGENTSTREAM_REASON, attr.AGENTSTREAM_REASONS):
            if key in attributes:
                attributes[key] = redact(attributes[key])
    events = [
        replace(e, attributes=dict(_redacted(e.attributes, redact))) if _has_content(e.attributes) else e
        for e in span.events
    ]
    return replace(span, attributes=attributes, events=events)


def otel_traces_row(span: Span, redact: Redact | None = None) -> list[Any]:
    """The row the OpenTelemetry Collector's ClickHouse exporter would write for this span.

    Maps in the row are the span's own dicts (no copies, this is the hot path): do not mutate a
    span after mapping it.
    """
    resource = span.resource_attributes
    if "service.name" not in resource and span.service_name:
        resource = {**resource, "service.name": span.service_name}
    events, links = span.events, span.links
    return [
        span.start_time_unix_nano,  # DateTime64(9) ticks
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.trace_state,
        span.name,
        span.kind,
        span.service_name,
        resource,
        span.scope_name,
        span.scope_version,
        _redacted(span.attributes, redact),
        max(span.end_time_unix_nano - span.start_time_unix_nano, 0),
        span.status_code,
        span.status_message,
        [e.time_unix_nano for e in events] if events else [],
        [e.name for e in events] if events else [],
        [_redacted(e.attributes, redact) for e in events] if events else [],
        [lk.trace_id for lk in links] if links else [],
        [lk.span_id for lk in links] if links else [],
        [lk.trace_state for lk in links] if links else [],
        [lk.attributes for lk in links] if links else [],
    ]


def is_chat_span(span: Span) -> bool:
    """An LLM call span (GenAI conventions: operation `chat`, name `chat <model>`)."""
    op = span.attributes.get(attr.GEN_AI_OPERATION_NAME)
    if op is not None:
        return op == "chat"
    return span.name.startswith("chat ") and span.kind == "Client"


def is_final_decision(span: Span) -> bool:
    """The span that carries a request's final decision."""
    return span.attributes.get(attr.AGENTSTREAM_DECISION_FINAL, "").lower() == "true"


def _request_ids(a: Mapping[str, str]) -> list[str]:
    """request, session, user, tenant: the leading id columns of `llm_calls` and `decisions`."""
    return [
        a.get(attr.AGENTSTREAM_REQUEST_ID, ""),
        a.get(attr.AGENTSTREAM_SESSION_ID) or a.get(attr.GEN_AI_CONVERSATION_ID, ""),
        a.get(attr.AGENTSTREAM_USER_ID, ""),
        a.get(attr.AGENTSTREAM_TENANT_ID, ""),
    ]


def llm_call_row(span: Span, redact: Redact | None = None) -> list[Any] | None:
    """The `llm_calls` row for a chat span, or None for any other span."""
    if not is_chat_span(span):
        return None
    a = span.attributes
    prompt = a.get(attr.GEN_AI_INPUT_MESSAGES, "")
    response = a.get(attr.GEN_AI_OUTPUT_MESSAGES, "")
    if redact is not None:
        prompt, response = redact(prompt), redact(response)
    status = a.get(attr.AGENTSTREAM_LLM_STATUS) or ("error" if span.status_code == "Error" else "ok")
    return [
        span.start_time_unix_nano // 1_000_000,  # DateTime64(3) ticks
        span.trace_id,
        span.span_id,
        *_request_ids(a),
        a.get(attr.AGENTSTREAM_DOMAIN, ""),
        a.get(attr.GEN_AI_PROVIDER_NAME, ""),
        a.get(attr.GEN_AI_REQUEST_MODEL, ""),
        a.get(attr.GEN_AI_RESPONSE_MODEL, ""),
        _uint(a.get(attr.AGENTSTREAM_STEP_INDEX), _UINT16_MAX),
        _uint(a.get(attr.GEN_AI_REQUEST_MAX_TOKENS)),
        prompt,
        response,
        _str_list(a.get(attr.GEN_AI_RESPONSE_FINISH_REASONS)),
        _uint(a.get(attr.GEN_AI_USAGE_INPUT_TOKENS)),
        _uint(a.get(attr.GEN_AI_USAGE_OUTPUT_TOKENS)),
        _float(a.get(attr.AGENTSTREAM_COST_USD)),
        max(span.end_time_unix_nano - span.start_time_unix_nano, 0) / 1e6,
        status,
        a.get(attr.ERROR_TYPE, ""),
        _flag(a.get(attr.AGENTSTREAM_CONTEXT_TRIMMED)),
        _uint(a.get(attr.AGENTSTREAM_CONTEXT_TRIMMED_CHARS)),
        a.get(attr.AGENTSTREAM_CONFIG_VERSION, ""),
        a.get(attr.AGENTSTREAM_ROLLOUT_ARM, ""),
    ]


def decision_row(span: Span, redact: Redact | None = None) -> list[Any] | None:
    """The `decisions` row for a final-decision span, or None for any other span.

    Stamped with the span's end (when the decision was made); `latency_ms` is the request's
    end-to-end latency as the stage measured it, not the span's duration.
    """
    if not is_final_decision(span):
        return None
    a = span.attributes
    reasons = _str_list(a.get(attr.AGENTSTREAM_REASONS))
    reason = a.get(attr.AGENTSTREAM_REASON, "")
    if redact is not None:
        reasons, reason = [redact(r) for r in reasons], redact(reason)
    return [
        span.end_time_unix_nano // 1_000_000,  # DateTime64(3) ticks
        span.trace_id,
        span.span_id,
        *_request_ids(a),
        a.get(attr.AGENTSTREAM_ROUTE, ""),
        a.get(attr.GEN_AI_REQUEST_MODEL, ""),
        a.get(attr.AGENTSTREAM_ROLLOUT_ARM, ""),
        a.get(attr.AGENTSTREAM_VERDICT, ""),
        reasons,
        _flag(a.get(attr.AGENTSTREAM_ESCALATED)),
        a.get(attr.AGENTSTREAM_STATUS, ""),
        reason,
        a.get(attr.AGENTSTREAM_LANGUAGE, ""),
        _uint(a.get(attr.GEN_AI_USAGE_INPUT_TOKENS)),
        _uint(a.get(attr.GEN_AI_USAGE_OUTPUT_TOKENS)),
        _float(a.get(attr.AGENTSTREAM_COST_USD)),
        _float(a.get(attr.AGENTSTREAM_LATENCY_MS)),
        _uint(a.get(attr.AGENTSTREAM_LLM_CALLS), _UINT16_MAX),
        a.get(attr.AGENTSTREAM_CONFIG_VERSION, ""),
        a.get(attr.AGENTSTREAM_COMPLEXITY, ""),
    ]


def replay_report_row(span: Span) -> list[Any] | None:
    """The `replay_reports` row for a replay's report span, or None for any other span.

    The summary travels as one JSON attribute (`agentstream.replay.summary`), the differing
    requests as another; a malformed summary gives zeros, never an exception.
    """
    a = span.attributes
    if a.get(REPLAY_REPORT_MARK, "").lower() != "true":
        return None
    try:
        summary = json.loads(a.get(attr.AGENTSTREAM_REPLAY_SUMMARY, "{}"))
    except ValueError:
        summary = {}
    if not isinstance(summary, dict):
        summary = {}

    def text(key: str) -> str:
        value = summary.get(key, "")
        return value if isinstance(value, str) else ""

    def number(key: str) -> str:
        value = summary.get(key)
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""

    return [
        span.end_time_unix_nano // 1_000_000,  # DateTime64(3) ticks
        a.get(attr.AGENTSTREAM_REPLAY_ID, "") or span.span_id,
        text("mode"),
        text("namespace"),
        text("source_namespace"),
        _uint(number("requests")),
        _uint(number("identical")),
        _float(number("agreement")),
        _float(number("status_agreement")),
        _float(number("cost_original_usd")),
        _float(number("cost_replay_usd")),
        _float(number("llm_latency_p95_original_ms")),
        _float(number("llm_latency_p95_replay_ms")),
        _uint(number("escalations_original")),
        _uint(number("escalations_replay")),
        _uint(number("skipped_unanswered")),
        text("original_version"),
        text("replay_version"),
        a.get(attr.AGENTSTREAM_REPLAY_DIFFERING, "[]"),
    ]
