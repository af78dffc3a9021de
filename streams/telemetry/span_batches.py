"""Spans travel to `agentstream.traces.v1` in batches: one message per partition per export.

A request makes six or seven spans, which took 6.3 Kafka messages per request sent one each,
2.6 in one batch per session per export (eighth session), and a few per export in one batch per
partition (tenth session; bench/README.md). Every span still goes to the partition its session
key hashes to, as keyed single spans did, so a session's spans share a partition and one sink at
a time writes a given span or decision row (`sinks/clickhouse.py: _unwritten`). Until the worker
knows the topic's partition count, batches are per session and keyed by it. Readers take every
shape (`unpack`), so a topic that still holds single spans, or a replay report's span, reads as
before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from streams.events.codecs import Codec, as_dict
from streams.events.records import Span, SpanBatch
from streams.kafka.partitioning import partition_of_key
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


class SpanMessage(NamedTuple):
    """One traces message: a keyed per-session batch (`partition` None, the producer hashes the
    key), or an unkeyed per-partition batch sent to `partition`."""

    key: bytes | None
    value: bytes
    partition: int | None = None


def pack(
    spans: Iterable[SpanRecord], codec: Codec, max_bytes: int = MAX_BATCH_BYTES, partitions: int | None = None
) -> list[SpanMessage]:
    """Messages holding `spans`, in order within each session: with `partitions` (the topic's
    count), one `SpanBatch` per partition that the spans' session keys hash to; without, one per
    session keyed by it. A batch of several spans that encodes larger than `max_bytes` is split
    in halves."""
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for span in spans:
        record = as_dict(span) if isinstance(span, Span) else span
        by_key.setdefault(session_key(record), []).append(record)
    if not partitions:
        return [SpanMessage(key, value) for key, group in by_key.items() for value in _encode(group, codec, max_bytes)]
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for key, group in by_key.items():
        by_partition.setdefault(partition_of_key(key, partitions), []).extend(group)
    return [
        SpanMessage(None, value, partition)
        for partition, group in sorted(by_partition.items())
        for value in _encode(group, codec, max_bytes)
    ]


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
