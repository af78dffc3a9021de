"""What the span exporter costs per span, on the processor's thread that holds the GIL.

    python bench/bench_span_export.py --spans 3000

Spans shaped like a request's (a stage span, the agent span, two chat spans carrying a ~1.5 kB
prompt and an event, a tool span) over 50 sessions, exported 40 at a time as the batch
processor hands them over. Three ways, same spans, same run:
- `typed`: the `Span` dataclass built field by field, then the codec (the exporter before
  2026-12-02; its conversion is kept below as this benchmark's baseline);
- `dicts`: `SpanRecords` straight to the Avro record's dict (the exporter now);
- `encode_only`: the Avro encoding of ready dicts alone, the floor of any conversion.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from streams.events.codecs import as_dict, get_codec
from streams.events.records import Span, SpanBatch, SpanEvent, SpanLink
from streams.telemetry import attributes as attr
from streams.telemetry import span_batches
from streams.telemetry.tracing import _KINDS, _STATUS, SpanRecords, _attrs

EXPORT_BATCH = 40
PARTITIONS = 4  # both ways pack per partition, as the worker does once it knows the count


def to_record(span: ReadableSpan) -> Span:
    """The exporter's conversion before 2026-12-02: the `Span` dataclass, field by field."""
    ctx = span.context
    parent = span.parent
    resource = _attrs(span.resource.attributes if span.resource else {})
    return Span(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent else "",
        trace_state=ctx.trace_state.to_header() if ctx.trace_state else "",
        name=span.name,
        kind=_KINDS.get(span.kind, "Unspecified"),
        service_name=resource.get("service.name", "agentstream"),
        resource_attributes=resource,
        scope_name=span.instrumentation_scope.name if span.instrumentation_scope else "",
        scope_version=(span.instrumentation_scope.version or "") if span.instrumentation_scope else "",
        start_time_unix_nano=span.start_time or 0,
        end_time_unix_nano=span.end_time or 0,
        attributes=_attrs(span.attributes),
        status_code=_STATUS[span.status.status_code],
        status_message=span.status.description or "",
        events=[SpanEvent(time_unix_nano=e.timestamp, name=e.name, attributes=_attrs(e.attributes)) for e in span.events],
        links=[
            SpanLink(
                trace_id=f"{lk.context.trace_id:032x}",
                span_id=f"{lk.context.span_id:016x}",
                attributes=_attrs(lk.attributes),
            )
            for lk in span.links
        ],
    )


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def make_spans(n_requests: int) -> list[ReadableSpan]:
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "agentstream"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("agentstream", "0.1")
    prompt = json.dumps([
        {"role": "system", "content": "You answer questions about orders. " * 20},
        {"role": "user", "content": "Where is my order 1234? It was due on Monday. " * 4},
    ])
    for i in range(n_requests):
        sid = f"s-{i % 50}"
        ids = {
            attr.AGENTSTREAM_REQUEST_ID: f"r-{i}", attr.AGENTSTREAM_SESSION_ID: sid,
            attr.AGENTSTREAM_USER_ID: "u1", attr.AGENTSTREAM_TENANT_ID: "t1",
        }
        stage = {"messaging.system": "kafka", "messaging.destination.name": "agentstream.routed.v1", **ids}
        with (
            tracer.start_as_current_span("process agentstream.routed.v1", kind=SpanKind.CONSUMER, attributes=stage),
            tracer.start_as_current_span("invoke_agent orders", attributes={"gen_ai.operation.name": "invoke_agent", **ids}),
        ):
            for _ in range(2):
                chat = {
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "sim-small",
                    "gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 40,
                    "gen_ai.input.messages": prompt, "gen_ai.response.finish_reasons": ["stop"],
                    "agentstream.cost_usd": 0.00042, "agentstream.context.trimmed": False, **ids,
                }
                with tracer.start_as_current_span("chat sim-small", kind=SpanKind.CLIENT, attributes=chat) as s:
                    s.add_event("retry", {"attempt": 1})
            with tracer.start_as_current_span("execute_tool lookup_order", attributes={"gen_ai.tool.name": "lookup_order", **ids}):
                pass
    provider.shutdown()
    return keep.spans


def per_span_us(spans: list[ReadableSpan], exports: dict[str, Callable[[Sequence[Any]], object]], rounds: int = 9) -> dict[str, float]:
    """Median µs per span of each way, the ways taking turns round by round (the machine's load
    drifts; one way after the other measured the drift)."""
    runs: dict[str, list[float]] = {way: [] for way in exports}
    for _ in range(rounds):
        for way, export in exports.items():
            started = time.perf_counter()
            for i in range(0, len(spans), EXPORT_BATCH):
                export(spans[i : i + EXPORT_BATCH])
            runs[way].append((time.perf_counter() - started) / len(spans) * 1e6)
    return {way: statistics.median(r) for way, r in runs.items()}


def main(n_spans: int) -> None:
    spans = make_spans(max(n_spans // 5, 1))
    codec = get_codec(validate=False)
    records = SpanRecords()
    ready = [as_dict(to_record(s)) for s in spans]
    index = {id(s): i for i, s in enumerate(spans)}
    figures = per_span_us(spans, {
        "typed": lambda b: span_batches.pack([to_record(s) for s in b], codec, partitions=PARTITIONS),
        "dicts": lambda b: span_batches.pack([records(s) for s in b], codec, partitions=PARTITIONS),
        "encode_only": lambda b: codec.encode_dict(SpanBatch.SCHEMA, {"spans": [ready[index[id(s)]] for s in b]}),
    })
    for way, us in figures.items():
        print(json.dumps({"bench": "span_export", "way": way, "us_per_span": round(us, 1), "spans": len(spans)}))
    print(json.dumps({
        "bench": "span_export", "metric": "dicts_over_typed", "value": round(figures["dicts"] / figures["typed"], 3),
        "encode_share_of_dicts": round(figures["encode_only"] / figures["dicts"], 3),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=3000)
    main(parser.parse_args().spans)
