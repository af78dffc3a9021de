"""Span -> row mapping for otel_traces, llm_calls and decisions."""

from __future__ import annotations

import json

from sinks import rows as R
from sinks.samples import request_trace
from streams.events.records import Span, SpanEvent, SpanLink
from streams.telemetry.redaction import Redactor


def _row(columns: tuple[str, ...], values: list) -> dict:
    assert len(columns) == len(values)
    return dict(zip(columns, values, strict=True))


def _span(**attrs: str) -> Span:
    return Span(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        parent_span_id="ef" * 8,
        name="chat gpt-4o",
        kind="Client",
        service_name="agentstream",
        start_time_unix_nano=1_700_000_000_123_456_789,
        end_time_unix_nano=1_700_000_001_623_456_789,
        attributes=dict(attrs),
    )


def test_otel_row_matches_exporter_columns() -> None:
    span = _span(**{"gen_ai.operation.name": "chat", "gen_ai.input.messages": "to a@b.io"})
    span.events = [SpanEvent(time_unix_nano=5, name="e", attributes={"k": "v"})]
    span.links = [SpanLink(trace_id="1" * 32, span_id="2" * 16, attributes={"x": "y"})]
    row = _row(R.OTEL_TRACES_COLUMNS, R.otel_traces_row(span, Redactor()))
    assert row["Timestamp"] == 1_700_000_000_123_456_789
    assert row["Duration"] == 1_500_000_000
    assert row["SpanKind"] == "Client" and row["StatusCode"] == "Unset"
    assert row["ResourceAttributes"] == {"service.name": "agentstream"}
    assert row["SpanAttributes"]["gen_ai.input.messages"] == "to [REDACTED:EMAIL]"
    assert row["Events.Timestamp"] == [5] and row["Events.Attributes"] == [{"k": "v"}]
    assert row["Links.TraceId"] == ["1" * 32] and row["Links.Attributes"] == [{"x": "y"}]
    # the span itself is not modified by redaction
    assert span.attributes["gen_ai.input.messages"] == "to a@b.io"


def test_negative_duration_clamps() -> None:
    span = _span()
    span.end_time_unix_nano = span.start_time_unix_nano - 5
    assert _row(R.OTEL_TRACES_COLUMNS, R.otel_traces_row(span))["Duration"] == 0


def test_llm_call_row() -> None:
    spans = request_trace(5, seed="t", llm_calls=2, prompt="I am x@y.org")
    chats = [s for s in spans if R.is_chat_span(s)]
    assert len(chats) == 2
    row = _row(R.LLM_CALL_COLUMNS, R.llm_call_row(chats[1], Redactor()))
    assert row["request_id"] == "t-req-5" and row["user_id"] == "user-5"
    assert row["step_index"] == 1 and row["max_tokens"] == 512
    assert row["input_tokens"] == 130 and row["output_tokens"] == 35
    assert row["finish_reasons"] == ["stop"]
    assert json.loads(row["prompt"])[0]["content"] == "I am [REDACTED:EMAIL]"
    assert (
        row["latency_ms"] == chats[1].end_time_unix_nano / 1e6 - chats[1].start_time_unix_nano / 1e6
    )
    assert row["timestamp"] == chats[1].start_time_unix_nano // 1_000_000
    assert row["context_trimmed"] == 1 and row["trimmed_chars"] == 200
    assert row["status"] == "ok" and row["error_type"] == ""


def test_llm_row_only_for_chat_spans() -> None:
    assert R.llm_call_row(_span(**{"gen_ai.operation.name": "embeddings"})) is None
    stage = _span()
    stage.name, stage.kind = "process agentstream.routed.v1", "Consumer"
    assert R.llm_call_row(stage) is None
    # no operation attribute: fall back to the span name convention
    assert R.llm_call_row(_span()) is not None


def test_llm_row_tolerates_garbage() -> None:
    span = _span(
        **{
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": "12.0",
            "gen_ai.usage.output_tokens": "-3",
            "gen_ai.request.max_tokens": "lots",
            "agentstream.cost.usd": "nan",
            "agentstream.step.index": "99999999",
            "gen_ai.response.finish_reasons": "stop",
        }
    )
    span.status_code = "Error"
    row = _row(R.LLM_CALL_COLUMNS, R.llm_call_row(span))
    assert (row["input_tokens"], row["output_tokens"], row["max_tokens"]) == (12, 0, 0)
    assert row["cost_usd"] == 0.0 and row["step_index"] == 65535
    assert row["finish_reasons"] == ["stop"]
    assert row["status"] == "error"  # no agentstream.llm.status: derived from the span status


def test_decision_row() -> None:
    spans = request_trace(5, seed="t", status="escalated", llm_calls=3)
    finals = [s for s in spans if R.is_final_decision(s)]
    assert len(finals) == 1 and all(R.decision_row(s) is None for s in spans if s not in finals)
    row = _row(R.DECISION_COLUMNS, R.decision_row(finals[0]))
    assert row["request_id"] == "t-req-5" and row["route"] == "billing"
    assert row["escalated"] == 1 and row["status"] == "escalated"
    assert row["reasons"] == ["escalated reason"]
    assert row["llm_calls"] == 3 and row["input_tokens"] == 120 + 130 + 140
    assert row["latency_ms"] == 50.0 + 120.0 + 5
    assert row["timestamp"] == finals[0].end_time_unix_nano // 1_000_000
    assert row["trace_id"] == finals[0].trace_id and row["span_id"] == finals[0].span_id


def test_decision_requires_final_flag() -> None:
    assert R.decision_row(_span(**{"agentstream.decision.final": "false"})) is None
    assert R.decision_row(_span(**{"agentstream.decision.final": "True"})) is not None


def test_redact_span_once_for_all_rows() -> None:
    calls: list[str] = []

    def redact(text: str) -> str:
        calls.append(text)
        return Redactor().redact(text)

    spans = request_trace(1, seed="t", status="escalated", prompt="me@x.io")
    redacted = [R.redact_span(s, redact) for s in spans]
    assert redacted[0] is spans[0]  # nothing to redact: no copy
    chat = redacted[2]
    assert "[REDACTED:EMAIL]" in chat.attributes["gen_ai.input.messages"]
    assert "me@x.io" in spans[2].attributes["gen_ai.input.messages"]  # original untouched
    assert len(calls) == 2 + 2  # prompt + response, then the decision's reason + reasons
    row = _row(R.LLM_CALL_COLUMNS, R.llm_call_row(chat))
    assert "[REDACTED:EMAIL]" in row["prompt"]
