"""Moves finished spans from the exporter's queue into `agentstream.traces.v1`.

The batch span processor exports on its own thread; this service is the event-loop side of that
hand-off. Spans go to Kafka as record batches built directly on the worker's aiokafka producer,
one batch per partition per drain: a span is observability, not part of any stage's output, so
it needs none of Faust's per-message machinery (a pending future, a buffer slot, a callback),
which cost the loop about as much per span as building the span did.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import mode

from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import log

MAX_PER_DRAIN = 2000  # spans taken off the queue per round, so a backlog does not hold the loop


@app.service
class SpanPump(mode.Service):
    def _take(self) -> list[tuple[bytes, bytes]]:
        q = app.services.span_queue
        spans: list[tuple[bytes, bytes]] = []
        while len(spans) < MAX_PER_DRAIN and not q.empty():
            spans.append(q.get_nowait())
        return spans

    async def _drain(self) -> int:
        spans = self._take()
        if spans:
            await publish_batches(app.producer, stream_topics.traces.get_topic_name(), spans)
        return len(spans)

    @mode.Service.task
    async def _pump(self) -> None:
        spans: list[tuple[bytes, bytes]] = []
        while not self.should_stop:
            spans = spans or self._take()
            if not spans:
                await self.sleep(0.05)
                continue
            try:
                await publish_batches(app.producer, stream_topics.traces.get_topic_name(), spans)
            except Exception as exc:  # the broker, say: the same spans again (the sink keeps one row per span id)
                log.warning("%d spans not published (%r): retrying in 1 s", len(spans), exc)
                await self.sleep(1.0)
            else:
                spans = []

    async def on_stop(self) -> None:
        provider = app.services.tracer_provider
        if provider is not None:
            # shutdown() flushes the batch processor on this worker thread, never on the loop.
            await asyncio.to_thread(provider.shutdown)
        try:
            while await self._drain():
                pass
            await app.producer.flush()
        except Exception as exc:  # stopping anyway; say what was lost
            log.warning("spans not published at shutdown: %r", exc)


async def publish_batches(producer: Any, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Each (key, value) to the partition its key hashes to (as a keyed send would), in record
    batches handed to aiokafka's accumulator; delivery is awaited by the producer's flush."""
    kafka = producer._ensure_producer()  # Faust's driver: the aiokafka producer on this loop
    await kafka.client._wait_on_metadata(topic)
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in records:
        by_partition[kafka._partition(topic, None, None, None, key, value)].append((key, value))
    for partition, items in by_partition.items():
        batch = kafka.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                await _send(kafka, batch, topic, partition)
                batch = kafka.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a span of {len(value)} bytes does not fit in a record batch")
        if batch.record_count():
            await _send(kafka, batch, topic, partition)


async def _send(kafka: Any, batch: Any, topic: str, partition: int) -> None:
    batch.close()  # nothing else is appended to it by the producer's own sends
    delivered = await kafka.send_batch(batch, topic, partition=partition)
    count = batch.record_count()

    def check(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("%d spans to %s[%d] not delivered: %r", count, topic, partition, fut.exception())

    delivered.add_done_callback(check)
