"""Tracing: OpenTelemetry spans, W3C trace context in Kafka headers, spans exported to Kafka.

The exporter runs on the batch processor's own thread (PITFALLS: thread-safe code only, no event
loop), so it only encodes spans to Avro and hands the bytes to a thread-safe queue; the worker's
event loop drains that queue into `agentstream.traces.v1` through the app's producer.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streams.events.codecs import from_dict, get_codec
from streams.events.records import Response, Span
from streams.telemetry import attributes as attr
from streams.telemetry import span_batches

SCOPE = "agentstream"
_propagator = TraceContextTextMapPropagator()
_KINDS = {
    SpanKind.INTERNAL: "Internal",
    SpanKind.SERVER: "Server",
    SpanKind.CLIENT: "Client",
    SpanKind.PRODUCER: "Producer",
    SpanKind.CONSUMER: "Consumer",
}
_STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value)


def _attrs(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    if not attributes:
        return {}
    return {k: v if type(v) is str else _str(v) for k, v in attributes.items()}


def _attributes_of(span: ReadableSpan) -> Mapping[str, Any] | None:
    """The span's attributes as the plain dict the SDK keeps inside them when it is there: the
    public view is a proxy over a mapping whose every item read takes the SDK's path, a third of
    the conversion's time. Any other SDK layout reads through the public view."""
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if type(inner) is dict else span.attributes


class SpanRecords:
    """`ReadableSpan` -> the Avro `Span` record as the plain dict fastavro encodes (attribute
    values stringified, as the Collector's table keeps them), the resource's attributes
    stringified once per resource.

    The exporter's hot path (bench/README.md, ninth session): it runs on the processor's thread
    but holds the GIL while it converts, so every microsecond here is taken from the event loop.
    No dataclass in between; `to_record` gives the typed `Span` for readers that want one.
    """

    def __init__(self) -> None:
        self._resource: tuple[Any, dict[str, str], str] | None = None

    def _resource_of(self, span: ReadableSpan) -> tuple[dict[str, str], str]:
        resource = span.resource
        cached = self._resource
        if cached is None or cached[0] is not resource:
            attrs = _attrs(resource.attributes if resource else {})
            cached = self._resource = (resource, attrs, attrs.get("service.name", "agentstream"))
        return cached[1], cached[2]

    def __call__(self, span: ReadableSpan) -> dict[str, Any]:
        ctx = span.context
        parent = span.parent
        scope = span.instrumentation_scope
        resource, service = self._resource_of(span)
        status = span.status
        return {
            "schema_version": 1,
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "parent_span_id": f"{parent.span_id:016x}" if parent else "",
            "trace_state": ctx.trace_state.to_header() if ctx.trace_state else "",
            "name": span.name,
            "kind": _KINDS.get(span.kind, "Unspecified"),
            "service_name": service,
            "resource_attributes": resource,
            "scope_name": scope.name if scope else "",
            "scope_version": (scope.version or "") if scope else "",
            "start_time_unix_nano": span.start_time or 0,
            "end_time_unix_nano": span.end_time or 0,
            "attributes": _attrs(_attributes_of(span)),
            "status_code": _STATUS[status.status_code],
            "status_message": status.description or "",
            "events": [
                {"time_unix_nano": e.timestamp, "name": e.name, "attributes": _attrs(e.attributes)}
                for e in span.events
            ],
            "links": [
                {
                    "trace_id": f"{lk.context.trace_id:032x}",
                    "span_id": f"{lk.context.span_id:016x}",
                    "trace_state": "",
                    "attributes": _attrs(lk.attributes),
                }
                for lk in span.links
            ],
        }


def to_record(span: ReadableSpan) -> Span:
    """An SDK span as our typed Avro `Span`: the exporter's record (`SpanRecords`), as a dataclass."""
    return from_dict(Span, SpanRecords()(span))


class QueueSpanExporter(SpanExporter):
    """Encodes finished spans in `SpanBatch`es (`span_batches.pack`) and queues the messages for
    the event loop to publish."""

    def __init__(self, out: queue.SimpleQueue[span_batches.SpanMessage]) -> None:
        self.out = out
        self.partitions: int | None = None
        """The traces topic's partition count, once the worker has read it (`SpanPump`): from
        then on an export is one batch per partition instead of one per session."""
        # No per-record schema check: `SpanRecords` builds every field from typed SDK values
        # (strings, ints, string maps), so the check would only cost the exporter's time.
        self._codec = get_codec(validate=False)
        self._records = SpanRecords()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records = [self._records(span) for span in spans]
        for message in span_batches.pack(records, self._codec, partitions=self.partitions):
            self.out.put(message)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def build_tracer_provider(
    service_name: str, exporter: SpanExporter, schedule_delay_ms: int = 200
) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms, max_export_batch_size=512)
    )
    return provider


def headers_with_context(span: trace.Span | None = None) -> dict[str, bytes]:
    """`traceparent` (and `tracestate`) of the given or current span, as fresh Kafka headers."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    _propagator.inject(carrier, context=ctx)
    return {k: v.encode() for k, v in carrier.items()}


def context_from_headers(headers: Any) -> otel_context.Context:
    """The remote parent carried in Kafka headers (a mapping or a list of pairs); empty if none."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    carrier = {
        k.lower(): (v.decode() if isinstance(v, bytes | bytearray) else str(v)) for k, v in items
    }
    return _propagator.extract(carrier)


def context_from_traceparent(traceparent: str) -> otel_context.Context:
    return _propagator.extract({"traceparent": traceparent} if traceparent else {})


def traceparent_of(span: trace.Span) -> str:
    return headers_with_context(span).get("traceparent", b"").decode()


@contextmanager
def stage_span(
    tracer: trace.Tracer, topic: str, stage: str, headers: Any, attributes: Mapping[str, Any]
) -> Iterator[trace.Span]:
    """`process <topic>` (messaging conventions) continuing the trace from the message headers."""
    with tracer.start_as_current_span(
        f"process {topic}",
        context=context_from_headers(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            attr.AGENTSTREAM_STAGE: stage,
            **attributes,
        },
    ) as span:
        yield span


def mark_error(span: trace.Span, error_type: str, message: str) -> None:
    span.set_attribute(attr.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, message))


def request_attributes(record: Any) -> dict[str, Any]:
    """Our ids on every span of a request (Request, Routed, Executed or Response)."""
    return {
        attr.AGENTSTREAM_REQUEST_ID: record.request_id,
        attr.AGENTSTREAM_SESSION_ID: record.session_id,
        attr.AGENTSTREAM_USER_ID: record.user_id,
        attr.AGENTSTREAM_TENANT_ID: record.tenant_id,
    }


def decision_attributes(
    resp: Response, *, verdict: str, reasons: list[str], llm_calls: int, cost_usd: float
) -> dict[str, Any]:
    """The final decision of a request, on the span that made it (the sink's `decisions` row)."""
    return {
        attr.AGENTSTREAM_DECISION_FINAL: True,
        attr.AGENTSTREAM_ROUTE: resp.domain,
        attr.GEN_AI_REQUEST_MODEL: resp.model,
        attr.AGENTSTREAM_ROLLOUT_ARM: resp.rollout_arm,
        attr.AGENTSTREAM_VERDICT: verdict,
        attr.AGENTSTREAM_REASONS: list(reasons),
        attr.AGENTSTREAM_ESCALATED: resp.status == "escalated",
        attr.AGENTSTREAM_STATUS: resp.status,
        attr.AGENTSTREAM_REASON: resp.reason,
        attr.AGENTSTREAM_CONFIG_VERSION: resp.config_version,
        attr.AGENTSTREAM_LATENCY_MS: resp.latency_ms,
        attr.GEN_AI_USAGE_INPUT_TOKENS: resp.input_tokens,
        attr.GEN_AI_USAGE_OUTPUT_TOKENS: resp.output_tokens,
        attr.AGENTSTREAM_COST_USD: cost_usd,
        attr.AGENTSTREAM_LANGUAGE: resp.language,
        attr.AGENTSTREAM_LLM_CALLS: llm_calls,
    }
