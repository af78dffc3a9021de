"""Spans travel to `agentstream.traces.v1` in batches: one message per session per export.

A request makes six or seven spans, which took 6.3 Kafka messages per request sent one each,
and 2.6 in batches (bench/README.md, eighth session: fewer records for the broker and the sink;
the worker's throughput did not measurably change). The exporter groups each
export by session and writes one `SpanBatch` per session, keyed by the session as single spans
were: a session's spans still share a partition, so one sink at a time writes a given span or
decision row (`sinks/clickhouse.py: _unwritten`). Readers take both shapes (`unpack`), so a
topic that still holds single spans, or a replay report's span, reads as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.events.codecs import Codec, as_dict
from streams.events.records import Span, SpanBatch
from streams.telemetry import attributes as attr

MAX_BATCH_BYTES = 256 * 1024
"""A batch larger than this is split: well under the producer's and the broker's 1 MB default
message limit, and small enough that one message never holds up the sink's batches for long."""


SpanRecord = Span | dict[str, Any]
"""A span as the `Span` dataclass, or as the plain dict of its Avro record (`tracing.SpanRecords`,
the exporter's path)."""


def session_key(span: SpanRecord) -> bytes:
    """The Kafka key of a span: its session, or its trace when it has none."""
    if isinstance(span, Span):
        return (span.attributes.get(attr.AGENTSTREAM_SESSION_ID) or span.trace_id).encode()
    key: str = span["attributes"].get(attr.AGENTSTREAM_SESSION_ID) or span["trace_id"]
    return key.encode()


def pack(spans: Iterable[SpanRecord], codec: Codec, max_bytes: int = MAX_BATCH_BYTES) -> list[tuple[bytes, bytes]]:
    """(key, value) messages holding `spans`: one `SpanBatch` per session, split in halves
    while a batch of several spans encodes larger than `max_bytes`."""
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for span in spans:
        record = as_dict(span) if isinstance(span, Span) else span
        by_key.setdefault(session_key(record), []).append(record)
    out: list[tuple[bytes, bytes]] = []
    for key, group in by_key.items():
        out.extend((key, value) for value in _encode(group, codec, max_bytes))
    return out


def _encode(spans: list[dict[str, Any]], codec: Codec, max_bytes: int) -> list[bytes]:
    value = codec.encode_dict(SpanBatch.SCHEMA, {"spans": spans})
    if len(value) <= max_bytes or len(spans) == 1:
        return [value]
    half = len(spans) // 2
    return _encode(spans[:half], codec, max_bytes) + _encode(spans[half:], codec, max_bytes)


def unpack(value: bytes, codec: Codec) -> list[Span]:
    """The spans of a traces message, a batch or a single span; `DecodeError` if neither."""
    if codec.writer_info(value).name == SpanBatch.SCHEMA:
        return codec.decode(value, SpanBatch).spans
    return [codec.decode(value, Span)]
