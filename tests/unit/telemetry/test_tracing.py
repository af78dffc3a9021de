"""Tracing without a broker: spans continue the trace carried in Kafka headers, and the exporter
queues them as the Avro records the sink stores, keyed by session."""

import queue

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from streams.events.codecs import get_codec
from streams.events.records import Span
from streams.telemetry import attributes as attr
from streams.telemetry import span_batches
from streams.telemetry.tracing import (
    QueueSpanExporter,
    headers_with_context,
    mark_error,
    request_attributes,
    stage_span,
)


class _Ids:
    request_id, session_id, user_id, tenant_id = "r1", "s1", "u1", "t1"


def _tracer() -> tuple[queue.SimpleQueue[span_batches.SpanMessage], TracerProvider]:
    out: queue.SimpleQueue[span_batches.SpanMessage] = queue.SimpleQueue()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(QueueSpanExporter(out)))
    return out, provider


def _drain(out: queue.SimpleQueue[span_batches.SpanMessage]) -> list[tuple[bytes, Span]]:
    items = []
    while not out.empty():
        key, value, _ = out.get_nowait()
        items.extend((key, span) for span in span_batches.unpack(value, get_codec()))
    return items


def test_a_stage_span_continues_the_trace_of_the_headers_and_is_queued_as_avro() -> None:
    out, provider = _tracer()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("upstream") as upstream:
        headers = headers_with_context(upstream)
    with stage_span(tracer, "agentstream.requests.v1", "router", headers, request_attributes(_Ids())):
        pass
    spans = {s.name: (key, s) for key, s in _drain(out)}
    key, stage = spans["process agentstream.requests.v1"]
    _, parent = spans["upstream"]
    assert stage.trace_id == parent.trace_id and stage.parent_span_id == parent.span_id
    assert key == b"s1", "spans of a session share its partition"
    assert stage.attributes[attr.AGENTSTREAM_STAGE] == "router"
    assert stage.attributes[attr.AGENTSTREAM_REQUEST_ID] == "r1"
    assert stage.kind == "Consumer" and stage.status_code == "Unset"


def test_without_headers_a_span_starts_a_new_trace_keyed_by_it() -> None:
    out, provider = _tracer()
    with stage_span(provider.get_tracer("test"), "t", "verifier", {}, {}) as span:
        mark_error(span, "timeout", "the model did not answer")
    [(key, record)] = _drain(out)
    assert record.parent_span_id == "" and key == record.trace_id.encode()
    assert record.status_code == "Error" and record.status_message == "the model did not answer"
    assert record.attributes[attr.ERROR_TYPE] == "timeout"


def test_attribute_values_are_stringified_as_the_collector_table_keeps_them() -> None:
    out, provider = _tracer()
    with provider.get_tracer("test").start_as_current_span(
        "s", attributes={"n": 3, "ok": True, "tags": ["a", "b"]}
    ):
        pass
    [(_, record)] = _drain(out)
    assert record.attributes["n"] == "3" and record.attributes["ok"] == "true"
    assert record.attributes["tags"] == '["a", "b"]'


def test_the_exporters_dict_path_encodes_byte_for_byte_what_to_record_defines() -> None:
    """`SpanRecords` is the exporter's fast path; `to_record` the readable definition."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Link, SpanKind

    from streams.events.records import SpanBatch
    from streams.telemetry.tracing import SpanRecords, to_record

    kept: list = []

    class Keep(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            kept.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "deployment": "x"}))
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracer = provider.get_tracer("scope", "1.2")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        link = Link(root.get_span_context(), {"why": "retry", "n": 2})
        with tracer.start_as_current_span(
            "child",
            links=[link],
            attributes={
                attr.AGENTSTREAM_SESSION_ID: "s1", "flag": True, "n": 3, "x": 0.5,
                "list": ["a", "é"], "ints": [1, 2], "text": "ünï " * 50,
            },
        ) as child:
            child.add_event("retry", {"attempt": 1, "ok": False})
            mark_error(child, "timeout", "took too long")
    records = SpanRecords()
    codec = get_codec(validate=False)
    assert len(kept) == 2
    for span in kept:
        assert codec.encode_dict("span_batch", {"spans": [records(span)]}) == codec.encode(
            SpanBatch(spans=[to_record(span)])
        )
    [(_, value, _)] = span_batches.pack([records(kept[0])], codec)
    assert span_batches.unpack(value, get_codec()) == [to_record(kept[0])]
    # A span whose attributes are not the SDK's bounded dict reads through the public view.
    assert SpanRecords()(_Plain(kept[0]))["attributes"] == records(kept[0])["attributes"]


class _Plain:
    """A `ReadableSpan` look-alike without the SDK's private attribute storage."""

    def __init__(self, span: object) -> None:
        self._span = span

    def __getattr__(self, name: str) -> object:
        if name == "_attributes":
            raise AttributeError(name)
        return getattr(self._span, name)
