"""Spans go to Kafka one batch per partition (or per session) per export, and read back whole, in every shape."""

import queue

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from streams.events.codecs import DecodeError, get_codec
from streams.events.records import Request, Span, SpanBatch
from streams.kafka.partitioning import partition_of_key
from streams.telemetry import attributes as attr
from streams.telemetry import span_batches
from streams.telemetry.tracing import QueueSpanExporter


def _span(i: int, session: str = "", text: str = "") -> Span:
    return Span(
        trace_id=f"{i:032x}", span_id=f"{i:016x}", name=f"span {i}", kind="Internal",
        service_name="test", start_time_unix_nano=i, end_time_unix_nano=i + 1,
        attributes={attr.AGENTSTREAM_SESSION_ID: session, "text": text} if session else {"text": text},
    )


def test_one_message_per_session_keyed_by_it_holding_that_sessions_spans_in_order() -> None:
    spans = [_span(1, "s1"), _span(2, "s2"), _span(3, "s1"), _span(4)]
    messages = span_batches.pack(spans, get_codec())
    by_key = {key: span_batches.unpack(value, get_codec()) for key, value, _ in messages}
    assert len(messages) == 3 and {p for _, _, p in messages} == {None}, "the producer hashes the key"
    assert [s.span_id for s in by_key[b"s1"]] == [_span(1).span_id, _span(3).span_id]
    assert [s.span_id for s in by_key[b"s2"]] == [_span(2).span_id]
    assert by_key[_span(4).trace_id.encode()] == [_span(4)], "no session: keyed by its trace"


def test_a_batch_over_the_byte_cap_is_split_and_loses_nothing() -> None:
    spans = [_span(i, "s1", text="x" * 1000) for i in range(40)]
    messages = span_batches.pack(spans, get_codec(), max_bytes=8_000)
    assert len(messages) > 1 and all(len(value) <= 8_000 for _, value, _ in messages)
    assert {key for key, _, _ in messages} == {b"s1"}
    read = [s for _, value, _ in messages for s in span_batches.unpack(value, get_codec())]
    assert read == spans, "every span, once, in order"


def test_with_the_partition_count_one_batch_per_partition_each_span_where_its_session_key_hashes() -> None:
    """What a keyed span would have been sent to (the producer's default partitioner), so a
    session's spans still share a partition and its sink."""
    sessions = [f"session-{i}" for i in range(40)]
    spans = [_span(i, sessions[i % 40]) for i in range(120)] + [_span(500)]
    messages = span_batches.pack(spans, get_codec(), partitions=4)
    assert len(messages) == 4 and all(key is None for key, _, _ in messages)
    assert sorted(p for _, _, p in messages) == [0, 1, 2, 3]
    read = []
    for _, value, partition in messages:
        for span in span_batches.unpack(value, get_codec()):
            key = (span.attributes.get(attr.AGENTSTREAM_SESSION_ID) or span.trace_id).encode()
            assert partition == partition_of_key(key, 4)
            read.append(span)
    assert sorted(read, key=lambda s: s.start_time_unix_nano) == spans, "every span, once"
    for session in sessions:
        mine = [s.start_time_unix_nano for s in read if s.attributes.get(attr.AGENTSTREAM_SESSION_ID) == session]
        assert mine == sorted(mine), "a session's spans in their order"


def test_partition_of_key_is_the_producers_default_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    for i in range(200):
        key = f"sess-{i}".encode()
        assert partition_of_key(key, 7) == DefaultPartitioner()(key, list(range(7)), list(range(7)))


def test_a_single_span_larger_than_the_cap_still_goes_alone() -> None:
    big = _span(1, "s1", text="y" * 20_000)
    [(key, value, _)] = span_batches.pack([big], get_codec(), max_bytes=8_000)
    assert key == b"s1" and span_batches.unpack(value, get_codec()) == [big]


def test_a_single_span_message_reads_as_one_span() -> None:
    """What the topic held before batches, and what a replay report still publishes."""
    assert span_batches.unpack(get_codec().encode(_span(7, "s7")), get_codec()) == [_span(7, "s7")]


def test_anything_else_is_a_decode_error_with_the_reason() -> None:
    other = get_codec().encode(
        Request(request_id="r", session_id="s", user_id="u", tenant_id="t", text="hi", created_ms=1)
    )
    with pytest.raises(DecodeError, match="expected Span, got Request"):
        span_batches.unpack(other, get_codec())
    with pytest.raises(DecodeError, match="single-object"):
        span_batches.unpack(b"not avro at all", get_codec())
    truncated = get_codec().encode(SpanBatch(spans=[_span(1, "s1")]))[:-3]
    with pytest.raises(DecodeError):
        span_batches.unpack(truncated, get_codec())


def _exported(spans: int, sessions: int, partitions: int | None) -> list[span_batches.SpanMessage]:
    """What the exporter queues for `spans` spans over `sessions` sessions, in one export."""
    out: queue.SimpleQueue[span_batches.SpanMessage] = queue.SimpleQueue()
    exporter = QueueSpanExporter(out)
    exporter.partitions = partitions
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("test")
    for i in range(spans):
        with tracer.start_as_current_span(f"op {i}", attributes={attr.AGENTSTREAM_SESSION_ID: f"s{i % sessions}"}):
            pass
    provider.force_flush()
    provider.shutdown()
    messages = []
    while not out.empty():
        messages.append(out.get_nowait())
    return messages


def test_the_exporter_queues_one_batch_per_session_of_an_export() -> None:
    messages = _exported(10, 2, partitions=None)
    assert sorted(key for key, _, _ in messages) == [b"s0", b"s1"]
    names = {key: [s.name for s in span_batches.unpack(v, get_codec())] for key, v, _ in messages}
    assert names[b"s0"] == [f"op {i}" for i in range(0, 10, 2)]
    assert names[b"s1"] == [f"op {i}" for i in range(1, 10, 2)]


def test_the_exporter_batches_per_partition_once_it_knows_the_count() -> None:
    messages = _exported(30, 10, partitions=3)
    expected = {partition_of_key(f"s{i}".encode(), 3) for i in range(10)}
    assert sorted(p for _, _, p in messages) == sorted(expected) and all(k is None for k, _, _ in messages)
    names = sorted(s.name for _, v, _ in messages for s in span_batches.unpack(v, get_codec()))
    assert names == sorted(f"op {i}" for i in range(30))
