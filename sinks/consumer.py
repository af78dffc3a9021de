"""The ClickHouse sink loop: traces topic -> ClickHouse, offsets committed only after the write.

Why a plain aiokafka consumer and not a Faust agent: the sink's only correctness rule is "commit
an offset only once ClickHouse has the rows". Faust acks an event when the agent has processed
it and commits acked offsets on its own timer (and with agent concurrency can commit past an
event still in flight, faust-streaming #606); there is no hook to hold a commit until an external
batch write succeeds, nor to stop fetching while the database is down. With aiokafka
(`enable_auto_commit=False`) the loop decides both: it commits exactly the offsets of the batch
it just wrote, and on a failed write it pauses its partitions (still polling, so it keeps its
group membership) and retries with exponential backoff, holding the offsets, dropping nothing.

Exactly-once effect on top of at-least-once delivery: every batch carries a deduplication token
(retries are no-ops on the server), the tables are ReplacingMergeTree (replays collapse), and the
sink records its progress in `agentstream.sink_offsets` right after the rows; on partition
assignment it resumes at max(Kafka committed, recorded), so a sink killed between the insert and
the commit does not replay the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from sinks.clickhouse import (
    DDL_DIR,
    ClickHouseSink,
    Client,
    chdb_path,
    connect,
    migrate,
    stored_offsets,
)
from sinks.rows import Redact
from streams.events.codecs import DecodeError, get_codec
from streams.events.records import DeadLetter, now_ms
from streams.telemetry import span_batches

__all__ = ["SinkLoop", "SinkStats", "run_sink"]

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    """Counters of one sink run (returned by `run_sink`, updated live)."""

    consumed: int = 0
    spans: int = 0
    undecodable: int = 0
    dead_lettered: int = 0
    flushes: int = 0
    flush_failures: int = 0
    commits: int = 0
    commit_failures: int = 0
    resumed_from_clickhouse: int = 0
    skipped_already_written: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: SinkLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._loop.on_assigned(assigned)


class SinkLoop:
    """Consume spans, batch them into a `ClickHouseSink`, commit after each successful flush."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        sink: ClickHouseSink,
        *,
        group: str,
        producer: AIOKafkaProducer | None = None,
        dead_letter_topic: str | None = None,
        backoff_initial_s: float = 0.1,
        backoff_cap_s: float = 5.0,
        stats: SinkStats | None = None,
    ) -> None:
        self.consumer = consumer
        self.sink = sink
        self.group = group
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.backoff_initial_s = backoff_initial_s
        self.backoff_cap_s = backoff_cap_s
        self.stats = stats or SinkStats()
        self.listener = _Rebalance(self)
        self._codec = get_codec()
        self._lock = asyncio.Lock()  # one flush/commit at a time; one client user at a time
        self._uncommitted: dict[TopicPartition, int] = {}  # next offset per partition
        self._first_uncommitted: float | None = None
        self._paused = False
        # Offsets below these are in ClickHouse already (resumed from sink_offsets). Checked per
        # record because aiokafka may hand out records it prefetched before our seek().
        self._floor: dict[TopicPartition, int] = {}

    # -- per record ------------------------------------------------------------------------

    async def handle(self, record: ConsumerRecord) -> None:
        """Decode and add one record; an undecodable one is logged, counted and dead-lettered."""
        self.stats.consumed += 1
        tp = TopicPartition(record.topic, record.partition)
        if record.offset < self._floor.get(tp, -1):
            self.stats.skipped_already_written += 1
            return
        try:
            spans = span_batches.unpack(record.value, self._codec)
        except DecodeError as exc:
            self.stats.undecodable += 1
            log.warning(
                "undecodable span at %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            await self._dead_letter(record, str(exc))
        else:
            for span in spans:
                self.sink.add(span)
            self.stats.spans += len(spans)
        self._uncommitted[tp] = record.offset + 1
        if self._first_uncommitted is None:
            self._first_uncommitted = time.monotonic()

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        if self.producer is None or not self.dead_letter_topic:
            return
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            reason=f"clickhouse-sink: {reason}",
            failed_ms=now_ms(),
        )
        try:
            await self.producer.send_and_wait(
                self.dead_letter_topic, self._codec.encode(letter), key=record.key
            )
            self.stats.dead_lettered += 1
        except KafkaError as exc:  # the bad record is logged above; never stall the sink on it
            log.error(
                "could not dead-letter %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )

    # -- flushing --------------------------------------------------------------------------

    def due(self) -> bool:
        """A flush is due: a failed batch waits, the batch is full, or it is old enough."""
        if self.sink.has_pending:
            return True
        if self._first_uncommitted is None:
            return False
        return (
            self.sink.buffered_spans >= self.sink.batch_max_rows
            or time.monotonic() - self._first_uncommitted >= self.sink.batch_max_age_s
        )

    async def flush_and_commit(self) -> None:
        """Write the batch, then commit its offsets. Raises if the write fails (offsets held)."""
        async with self._lock:
            if not self._uncommitted and not self.sink.has_pending:
                return
            snapshot = dict(self._uncommitted)
            progress = {(tp.topic, tp.partition): off for tp, off in snapshot.items()}
            result = await asyncio.to_thread(self.sink.flush, progress, group=self.group)
            self.stats.flushes += 1
            self.stats.rows = dict(self.sink.inserted)
            for tp, off in snapshot.items():
                if self._uncommitted.get(tp) == off:
                    del self._uncommitted[tp]
            if not self._uncommitted:
                self._first_uncommitted = None
            assigned = self.consumer.assignment()
            to_commit = {tp: off for tp, off in snapshot.items() if tp in assigned}
            if not to_commit:
                return
            try:
                await self.consumer.commit(to_commit)
                self.stats.commits += 1
            except KafkaError as exc:
                # A rebalance took the partitions; the rows are written and sink_offsets
                # records the progress, so the next owner resumes after them.
                self.stats.commit_failures += 1
                log.warning("commit after flush failed (%s); progress kept in sink_offsets", exc)
            log.debug("flushed %s in %.3fs", result.rows, result.seconds)

    async def _wait_polling(self, seconds: float, stop: asyncio.Event) -> None:
        """Sleep while still calling getmany (partitions paused), so the group keeps us."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            batch = await self.consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batch.values():  # partitions assigned meanwhile are not paused
                for record in records:
                    await self.handle(record)

    def _pause(self) -> None:
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)
        self._paused = True

    def _resume(self) -> None:
        if self._paused:
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.resume(*assigned)
            self._paused = False

    # -- rebalance -------------------------------------------------------------------------

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Flush and commit before the partitions go; if that fails, forget the batch: its
        offsets were never committed, so whoever gets the partitions re-reads it."""
        try:
            await self.flush_and_commit()
        except Exception as exc:
            log.warning("flush on revoke failed (%s); batch left to the next owner", exc)
            async with self._lock:
                self.sink.discard()
                self._uncommitted.clear()
                self._first_uncommitted = None
        self._paused = False
        self._floor.clear()

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Resume after the last batch ClickHouse has, if that is past the Kafka commit.

        The partitions stay paused while we look: aiokafka starts fetching as soon as the
        assignment is set, and getmany could otherwise hand out records from the old position.
        """
        if not assigned:
            return
        self.consumer.pause(*assigned)
        try:
            await self._seek_to_recorded(assigned)
        finally:
            if not self._paused:  # an outage pause stays until a flush succeeds
                self.consumer.resume(*assigned)

    async def _seek_to_recorded(self, assigned: list[TopicPartition]) -> None:
        try:
            async with self._lock:
                recorded: dict[tuple[str, int], int] = {}
                for topic in {tp.topic for tp in assigned}:
                    found = await asyncio.to_thread(
                        stored_offsets, self.sink.client, self.group, topic
                    )
                    recorded.update({(topic, p): o for p, o in found.items()})
        except Exception as exc:
            log.warning("cannot read sink_offsets (%s); resuming at the Kafka commits", exc)
            return
        candidates = [tp for tp in assigned if (tp.topic, tp.partition) in recorded]
        if not candidates:
            return
        ends = await self.consumer.end_offsets(candidates)
        for tp in candidates:
            target = recorded[(tp.topic, tp.partition)]
            committed = await self.consumer.committed(tp)
            if committed is not None and committed >= target:
                continue
            if target > ends.get(tp, 0):
                log.warning(
                    "sink_offsets says %s@%d beyond the end %d; ignored",
                    tp,
                    target,
                    ends.get(tp, 0),
                )
                continue
            log.info("resuming %s at %d from sink_offsets (Kafka commit %s)", tp, target, committed)
            self.consumer.seek(tp, target)
            self._floor[tp] = target
            self.stats.resumed_from_clickhouse += 1
            # Bring the Kafka commit up to date with the next flush (lag monitoring reads it).
            self._uncommitted[tp] = target
            if self._first_uncommitted is None:
                self._first_uncommitted = time.monotonic()

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, drain_timeout_s: float = 10.0) -> SinkStats:
        """Consume until `stop` is set, then flush what is buffered (bounded by the timeout)."""
        attempt = 0
        while not stop.is_set():
            if self.due():
                try:
                    await self.flush_and_commit()
                except Exception as exc:
                    attempt += 1
                    self.stats.flush_failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    delay = min(self.backoff_cap_s, self.backoff_initial_s * 2 ** (attempt - 1))
                    log.warning(
                        "flush failed (attempt %d, retry in %.1fs): %s",
                        attempt,
                        delay,
                        self.stats.last_error,
                    )
                    self._pause()
                    await self._wait_polling(delay, stop)
                    continue
                if attempt:
                    log.info("flush succeeded after %d failed attempt(s)", attempt)
                attempt = 0
                self._resume()
            room = max(self.sink.batch_max_rows - self.sink.buffered_spans, 1)
            wait_ms = 200
            if self._first_uncommitted is not None:
                left = self.sink.batch_max_age_s - (time.monotonic() - self._first_uncommitted)
                wait_ms = int(min(max(left, 0.0), 0.2) * 1000)
            batch = await self.consumer.getmany(timeout_ms=wait_ms, max_records=room)
            for records in batch.values():
                for record in records:
                    await self.handle(record)
        await self._drain(drain_timeout_s)
        return self.stats

    async def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = self.backoff_initial_s
        while self._uncommitted or self.sink.has_pending:
            try:
                await self.flush_and_commit()
                return
            except Exception as exc:
                self.stats.flush_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() + delay > deadline:
                    log.error(
                        "stopping with %d span(s) unwritten and uncommitted (they will be "
                        "re-read on restart): %s",
                        self.sink.buffered_spans,
                        exc,
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_cap_s)


async def _open_clickhouse(
    url: str, client: Client | None, ddl_dir: Path | None, stop: asyncio.Event, cap_s: float
) -> Any:
    """Connect and migrate, retrying with backoff while ClickHouse is unreachable (a sink may
    start before its database); None if stopped first. Nothing is consumed until this succeeds."""
    delay = 0.1
    while not stop.is_set():
        try:
            ch = client if client is not None else await asyncio.to_thread(connect, url)
            if ddl_dir is not None:
                applied = await asyncio.to_thread(migrate, ch, ddl_dir)
                if applied:
                    log.info("applied migrations: %s", ", ".join(applied))
            return ch
        except Exception as exc:
            log.warning(
                "ClickHouse not ready (%s: %s); retry in %.1fs", type(exc).__name__, exc, delay
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, cap_s)
    return None


async def run_sink(
    bootstrap: str,
    topic: str,
    group: str,
    clickhouse_url: str,
    stop_event: asyncio.Event,
    *,
    batch_max_rows: int = 5000,
    batch_max_age_s: float = 1.0,
    dead_letter_topic: str | None = None,
    client: Client | None = None,
    ddl_dir: Path | None = DDL_DIR,
    serve_queries: bool = True,
    query_host: str = "127.0.0.1",
    query_port: int = 0,
    redact: Redact | None = None,
    backoff_cap_s: float = 5.0,
    drain_timeout_s: float = 10.0,
    stats: SinkStats | None = None,
    on_ready: Callable[[], Any] | None = None,
) -> SinkStats:
    """Run the sink until `stop_event` is set; returns its counters.

    Args:
        client: use this client instead of `connect(clickhouse_url)` (tests wrap it to inject
            faults); the URL still decides where the query endpoint lives.
        ddl_dir: migrations applied at start (None to skip, e.g. when DDL is applied by ops).
        serve_queries: with a `chdb://` URL, serve read-only SQL on `query_host:query_port`
            (0 = any free port) and write the port to `<dir>/sink.port`, because no other
            process can open the chDB directory while the sink holds it.
        redact: applied to prompt/response content before it is written (defence in depth).
        on_ready: called once the consumer has started and the query endpoint is up.
    """
    own_client = client is None
    ch = await _open_clickhouse(clickhouse_url, client, ddl_dir, stop_event, backoff_cap_s)
    if ch is None:
        return stats or SinkStats()
    sink = ClickHouseSink(ch, batch_max_rows, batch_max_age_s, redact=redact)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=batch_max_rows,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap) if dead_letter_topic else None
    loop = SinkLoop(
        consumer,
        sink,
        group=group,
        producer=producer,
        dead_letter_topic=dead_letter_topic,
        backoff_cap_s=backoff_cap_s,
        stats=stats,
    )
    server = None
    data_dir = chdb_path(clickhouse_url)
    async with contextlib.AsyncExitStack() as stack:
        if own_client and hasattr(ch, "close"):
            stack.callback(ch.close)
        if serve_queries and data_dir is not None:
            from sinks.query_server import QueryServer

            server = QueryServer(
                clickhouse_url, host=query_host, port=query_port, port_file=data_dir / "sink.port"
            )
            await server.start()
            stack.push_async_callback(server.stop)
        if producer is not None:
            await producer.start()
            stack.push_async_callback(producer.stop)
        consumer.subscribe([topic], listener=loop.listener)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        if on_ready is not None:
            on_ready()
        result = await loop.run(stop_event, drain_timeout_s=drain_timeout_s)
    return result
