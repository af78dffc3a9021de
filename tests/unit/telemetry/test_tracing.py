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


def test_the_exporters_record_holds_every_field_of_the_sdk_span() -> None:
    """`SpanRecords` is the one mapping from the SDK's span to our Avro record: ids as hex,
    kinds and statuses by name, every attribute value stringified, events and links whole."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Link, SpanKind

    from streams.events.records import SpanEvent, SpanLink
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
    child_sdk, root_sdk = kept
    records = SpanRecords()
    codec = get_codec()  # validating: the record must be a valid Avro `Span`
    [(_, value, _)] = span_batches.pack([records(child_sdk), records(root_sdk)], codec, partitions=1)
    child_rec, root_rec = span_batches.unpack(value, codec)
    trace_hex = f"{root_sdk.context.trace_id:032x}"
    root_hex = f"{root_sdk.context.span_id:016x}"
    assert (root_rec.trace_id, root_rec.span_id, root_rec.parent_span_id) == (trace_hex, root_hex, "")
    assert (child_rec.trace_id, child_rec.parent_span_id) == (trace_hex, root_hex)
    assert child_rec.span_id == f"{child_sdk.context.span_id:016x}" and len(child_rec.span_id) == 16
    assert (root_rec.kind, child_rec.kind) == ("Server", "Internal")
    assert (root_rec.name, child_rec.name) == ("root", "child")
    assert child_rec.service_name == "svc" and child_rec.resource_attributes["deployment"] == "x"
    assert (child_rec.scope_name, child_rec.scope_version) == ("scope", "1.2")
    assert child_rec.start_time_unix_nano == child_sdk.start_time < child_rec.end_time_unix_nano == child_sdk.end_time
    assert child_rec.attributes == {
        attr.AGENTSTREAM_SESSION_ID: "s1", "flag": "true", "n": "3", "x": "0.5",
        "list": '["a", "é"]', "ints": "[1, 2]", "text": "ünï " * 50, attr.ERROR_TYPE: "timeout",
    }
    assert (child_rec.status_code, child_rec.status_message) == ("Error", "took too long")
    assert (root_rec.status_code, root_rec.status_message) == ("Unset", "")
    [event] = child_sdk.events
    assert child_rec.events == [
        SpanEvent(time_unix_nano=event.timestamp, name="retry", attributes={"attempt": "1", "ok": "false"})
    ]
    assert child_rec.links == [SpanLink(trace_id=trace_hex, span_id=root_hex, attributes={"why": "retry", "n": "2"})]
    assert to_record(child_sdk) == child_rec, "the typed view is the same record"
    # A span whose attributes are not the SDK's bounded dict reads through the public view.
    assert SpanRecords()(_Plain(child_sdk))["attributes"] == records(child_sdk)["attributes"]


class _Plain:
    """A `ReadableSpan` look-alike without the SDK's private attribute storage."""

    def __init__(self, span: object) -> None:
        self._span = span

    def __getattr__(self, name: str) -> object:
        if name == "_attributes":
            raise AttributeError(name)
        return getattr(self._span, name)
