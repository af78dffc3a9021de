"""The last hop: every answer in the outbox reaches `agentstream.responses.v1` exactly once.

The stages before it are at-least-once (a crash redelivers, a resumed task re-emits), so the same
request id can arrive here more than once. This service makes the edge exactly-once with Kafka
transactions instead of Faust's `exactly_once` (open bugs, see PITFALLS):

- one transactional producer per outbox partition (`<app>-responder-<p>`): starting it fences a
  zombie that still holds the partition and aborts whatever it had not committed;
- the responses written and the outbox offsets consumed go into one transaction, so a response is
  visible to `read_committed` readers if and only if its outbox record counts as consumed;
- the request ids already answered are read back from the responses partition itself (committed
  data only, over the dedup window) when the partition is taken, so the dedup state can never
  disagree with what users saw.

Outbox and responses are keyed by session id and have the same partition count, so outbox
partition p only ever answers into responses partition p.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ProducerFenced

from streams.events.codecs import DecodeError, get_codec
from streams.events.records import DeadLetter, Response, now_ms
from streams.telemetry import attributes as attr

log = logging.getLogger(attr.AGENTSTREAM_RESPONDER)


@dataclass
class _Partition:
    """What the responder holds for one outbox partition it owns."""

    producer: AIOKafkaProducer
    answered: dict[str, int] = field(default_factory=dict)  # request id -> responded (ms)


@dataclass
class ResponderConfig:
    bootstrap: str
    group_id: str  # consumer group and transactional-id prefix
    outbox: str
    responses: str
    deadletter: str
    monitor: str = ""  # single-partition topic the monitor reads (empty: none)
    dedup_window_s: float = 24 * 3600.0
    session_timeout_ms: int = 6000
    max_batch: int = 500


class Responder:
    """Consume-transform-produce with one Kafka transaction per partition batch."""

    def __init__(self, cfg: ResponderConfig, on_fatal: Callable[[BaseException], None]) -> None:
        self.cfg = cfg
        self._on_fatal = on_fatal
        self._owned: dict[int, _Partition] = {}
        self._assigned: set[TopicPartition] = set()  # as the listener last saw it
        self._unheld: set[TopicPartition] = set()  # assigned, but no producer yet: retake, rewind
        self._lock = asyncio.Lock()  # a batch and a rebalance never interleave
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0
        self.dropped_duplicates = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap,
            group_id=self.cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self.cfg.session_timeout_ms,
            rebalance_timeout_ms=60_000,  # taking a partition reads back its dedup window
            heartbeat_interval_ms=max(500, self.cfg.session_timeout_ms // 6),
            max_poll_records=self.cfg.max_batch,
        )
        self._consumer.subscribe([self.cfg.outbox], listener=_Listener(self))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="responder")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        async with self._lock:
            for part in self._owned.values():
                await _quietly(part.producer.stop())
            self._owned.clear()
        if self._consumer:
            await _quietly(self._consumer.stop())

    # -- partitions ----------------------------------------------------------------------------

    async def _take(self, partition: int) -> None:
        """Fences the previous owner, then learns what it already answered (committed only)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.cfg.bootstrap,
            transactional_id=f"{self.cfg.group_id}-{partition}",
            enable_idempotence=True,
            acks="all",
            linger_ms=1,
        )
        try:
            await producer.start()  # init_transactions: aborts the old owner's open transaction
            answered = await self._answered_in(partition)
        except BaseException:
            await _quietly(producer.stop())
            raise
        self._owned[partition] = _Partition(producer, answered)

    async def _answered_in(self, partition: int) -> dict[str, int]:
        tp = TopicPartition(self.cfg.responses, partition)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=20,  # a read to a known end: aiokafka's 500 ms was paid per partition
        )
        await reader.start()
        try:
            reader.assign([tp])
            since = now_ms() - int(self.cfg.dedup_window_s * 1000)
            end = (await reader.end_offsets([tp]))[tp]
            found = (await reader.offsets_for_times({tp: since}))[tp]
            start = found.offset if found else end
            answered: dict[str, int] = {}
            if start >= end:
                return answered
            reader.seek(tp, start)
            codec = get_codec()
            while await reader.position(tp) < end:
                for msgs in (await reader.getmany(tp, timeout_ms=500, max_records=5000)).values():
                    for m in msgs:
                        if m.offset >= end:
                            break
                        try:
                            answered[codec.decode(m.value, Response).answer_key()] = m.timestamp
                        except DecodeError:
                            continue
            return answered
        finally:
            await reader.stop()

    async def _drop(self, partition: int) -> None:
        part = self._owned.pop(partition, None)
        if part:
            await _quietly(part.producer.stop())

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer
        try:
            while not self._stopping:
                batches = await self._consumer.getmany(
                    timeout_ms=200, max_records=self.cfg.max_batch
                )
                for tp, records in batches.items():
                    if records:
                        await self._publish(tp, records)
                if self._unheld:
                    await self._retake_unheld()
                self._expire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dead responder would silently stop every answer: end loudly
            self._on_fatal(exc)

    async def _publish(self, tp: TopicPartition, records: list[Any]) -> None:
        async with self._lock:
            if tp not in self._assigned or tp in self._unheld:
                return  # revoked (the new owner reads these again) or rewound once retaken
            part = self._owned[tp.partition]
            fresh: dict[str, int] = {}
            try:
                async with part.producer.transaction():
                    sends = [f for msg in records for f in await self._one(part, tp.partition, msg, fresh)]
                    await asyncio.gather(*sends)
                    await part.producer.send_offsets_to_transaction(
                        {tp: records[-1].offset + 1}, self.cfg.group_id
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Aborted, fenced or never begun: nothing of this batch is visible. The partition
                # is taken again (a new producer: init_transactions resolves any half-done state)
                # and read again from its committed offset; a revoke in the meantime hands the
                # batch to the new owner instead.
                kind = "fenced" if isinstance(exc, ProducerFenced) else "failed"
                log.warning(
                    "responder: transaction on partition %d %s (%r); taking it again",
                    tp.partition,
                    kind,
                    exc,
                )
                await self._drop(tp.partition)
                self._unheld.add(tp)
                return
            part.answered.update(fresh)
            self.published += len(fresh)

    async def _retake_unheld(self) -> None:
        """Takes again the assigned partitions we hold no producer for, each rewound to its
        committed offset (what was fetched meanwhile was dropped). One try per loop turn, and the
        lock is released between tries, so a rebalance is never held up by a broker outage."""
        assert self._consumer
        async with self._lock:
            self._unheld &= self._assigned
            for tp in sorted(self._unheld, key=lambda t: t.partition):
                try:
                    if tp.partition not in self._owned:
                        await self._take(tp.partition)
                    committed = await self._consumer.committed(tp)
                    if committed is None:
                        await self._consumer.seek_to_beginning(tp)
                    else:
                        self._consumer.seek(tp, committed)
                    self._unheld.discard(tp)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("responder: cannot take partition %d yet (%r)", tp.partition, exc)
                    await self._drop(tp.partition)
        if self._unheld:
            await asyncio.sleep(1.0)

    async def _one(
        self, part: _Partition, partition: int, msg: Any, fresh: dict[str, int]
    ) -> list[asyncio.Future[Any]]:
        """Queues one record into the open transaction (and its copy for the monitor); returns
        the delivery futures."""
        try:
            resp = get_codec().decode(msg.value, Response)
        except DecodeError as exc:
            dead = DeadLetter.of(
                msg.topic,
                msg.partition,
                msg.offset,
                msg.key,
                msg.value or b"",
                f"undecodable Response in outbox: {exc}",
            )
            return [await part.producer.send(self.cfg.deadletter, get_codec().encode(dead), key=msg.key)]
        rid = resp.answer_key()
        if rid in part.answered or rid in fresh:
            self.dropped_duplicates += 1
            return []
        fresh[rid] = now_ms()
        sent = [
            await part.producer.send(
                self.cfg.responses,
                msg.value,
                key=msg.key,
                partition=partition,
                headers=list(msg.headers or ()),
            )
        ]
        if self.cfg.monitor:
            # Each answer once, in the same transaction: the monitor counts what users got.
            sent.append(await part.producer.send(self.cfg.monitor, msg.value, key=b"monitor", partition=0))
        return sent

    def _expire(self) -> None:
        cutoff = now_ms() - int(self.cfg.dedup_window_s * 1000)
        for part in self._owned.values():
            if len(part.answered) > 10_000:
                part.answered = {k: t for k, t in part.answered.items() if t >= cutoff}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, responder: Responder) -> None:
        self.r = responder

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.r._lock:  # waits for the batch in progress to commit or abort
            self.r._assigned -= set(revoked)
            self.r._unheld -= set(revoked)
            for tp in revoked:
                await self.r._drop(tp.partition)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        started = time.monotonic()
        async with self.r._lock:
            self.r._assigned |= set(assigned)
            # Each partition's fencing and read-back is its own: all at once, not one after another
            # (in a row they held the first answers of a starting worker for ~1 s).
            await asyncio.gather(*(self._take(tp) for tp in assigned if tp.partition not in self.r._owned))
        log.info(
            "responder: took partitions %s in %.2fs",
            sorted(tp.partition for tp in assigned),
            time.monotonic() - started,
        )

    async def _take(self, tp: TopicPartition) -> None:
        try:
            await self.r._take(tp.partition)
        except Exception as exc:  # broker away: the loop takes it again (and rewinds) before its batches
            log.warning("responder: cannot take partition %d yet (%r)", tp.partition, exc)
            self.r._unheld.add(tp)


async def _quietly(aw: Awaitable[object]) -> None:
    try:
        await aw
    except Exception as exc:
        log.debug("ignored while stopping: %r", exc)
