"""A replay's report travels as one span and becomes one `replay_reports` row."""

from __future__ import annotations

import json

from sinks.clickhouse import ClickHouseSink
from sinks.rows import REPLAY_REPORT_COLUMNS, replay_report_row
from streams.events.codecs import get_codec
from streams.events.records import Span
from streams.replay.report import differing, report_span
from streams.replay.shadow import Comparison, Decision

SUMMARY = {
    "requests": 20, "identical": 19, "agreement": 0.95, "status_agreement": 1.0,
    "cost_original_usd": 0.0123, "cost_replay_usd": 0.0101, "llm_latency_p95_original_ms": 310.5,
    "llm_latency_p95_replay_ms": 290.0, "escalations_original": 3, "escalations_replay": 2,
    "skipped_unanswered": 1, "mode": "shadow", "namespace": "-replay-ab12", "source_namespace": "",
    "original_version": "v1", "replay_version": "v1-candidate",
}


def _decision(status: str, model: str = "sim-small") -> Decision:
    return Decision("billing", model, "ok", status, "", 10, 5, 100.0)


def test_report_span_maps_to_one_row_with_the_summary_and_differences() -> None:
    comparisons = [
        Comparison("r-same", _decision("ok"), _decision("ok")),
        Comparison("r-diff", _decision("escalated"), _decision("ok", "sim-large")),
        Comparison("r-lost", _decision("ok"), None),
    ]
    differ = differing(comparisons)
    assert [d["request_id"] for d in differ] == ["r-diff", "r-lost"]
    assert differ[0]["differences"] == ["model", "status"] and differ[1]["replayed"] is None
    span = report_span(SUMMARY, differ, report_id="rep-1", now_ns=1_750_000_000_000_000_000)
    # It survives the Avro round trip the traces topic imposes.
    span = get_codec().decode(get_codec().encode(span), Span)
    row = dict(zip(REPLAY_REPORT_COLUMNS, replay_report_row(span) or [], strict=True))
    assert row["report_id"] == "rep-1" and row["timestamp"] == 1_750_000_000_000
    assert row["mode"] == "shadow" and row["requests"] == 20 and row["identical"] == 19
    assert row["agreement"] == 0.95 and row["cost_replay_usd"] == 0.0101
    assert row["escalations_original"] == 3 and row["replay_version"] == "v1-candidate"
    assert json.loads(row["differing"]) == differ


def test_other_spans_and_malformed_summaries() -> None:
    span = report_span({"requests": "many", "agreement": True, "mode": 7}, [], report_id="x")
    row = dict(zip(REPLAY_REPORT_COLUMNS, replay_report_row(span) or [], strict=True))
    assert row["requests"] == 0 and row["agreement"] == 0.0 and row["mode"] == ""
    plain = Span(trace_id="a" * 32, span_id="b" * 16, name="process x", kind="Consumer",
                 service_name="s", start_time_unix_nano=1, end_time_unix_nano=2)
    assert replay_report_row(plain) is None


def test_sink_buffers_the_report_row() -> None:
    sink = ClickHouseSink(client=None)  # type: ignore[arg-type]
    sink.add(report_span(SUMMARY, [], report_id="rep-2"))
    assert len(sink._rows["replay_reports"]) == 1 and len(sink._rows["otel_traces"]) == 1
    assert not sink._rows["decisions"]
