"""What every stage does at its edges: decode or dead-letter, publish keyed by session, die loudly."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from streams.events.codecs import DecodeError, get_codec
from streams.events.records import DeadLetter
from streams.kafka import stream_topics
from streams.kafka.app import active_partitions, ownership_settled
from streams.kafka.topic_reader import read_range

log = logging.getLogger("agentstream")
T = TypeVar("T")


async def publish(
    topic: Any, record: Any, headers: dict[str, bytes] | None = None, *, wait: bool = False
) -> None:
    """Keyed by session id: one session stays on one partition, in order.

    `headers` are built fresh per message (the trace context of the span that decided it), never
    copied from the input, so a stale `traceparent` is replaced rather than appended. With `wait`
    it returns only once the broker has the record (needed outside stream iteration, where no
    offset commit flushes the producer first).
    """
    fut = await topic.send(key=record.session_id.encode(), value=get_codec().encode(record), headers=headers or {})
    if wait:
        await fut


async def dead_letter(event: Any, reason: str) -> None:
    msg = event.message
    value = msg.value if isinstance(msg.value, bytes) else bytes(msg.value or b"")
    key = msg.key if isinstance(msg.key, bytes | type(None)) else str(msg.key).encode()
    record = DeadLetter.of(msg.topic, msg.partition, msg.offset, key[:1024] if key else key, value, reason)
    await stream_topics.deadletter.send(key=msg.key, value=get_codec().encode(record))
    log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)


async def decode_or_dead_letter(event: Any, cls: type[T]) -> T | None:
    value = event.value
    if not isinstance(value, bytes):
        await dead_letter(event, f"value is {type(value).__name__}, expected Avro bytes")
        return None
    try:
        return get_codec().decode(value, cls)
    except DecodeError as exc:
        await dead_letter(event, f"undecodable {cls.__name__}: {exc}")
        return None


Handler = Callable[[T, Any], Awaitable[None]]


async def consume(stream: Any, cls: type[T], stage: str, handle: Handler[T], *, contiguous: bool = True) -> None:
    """The one skeleton of every stage: decode or dead-letter, handle, fail loudly.

    A handler that raises on one event dead-letters that event with the reason and goes on, so a
    poison event cannot crash-loop its partition. Only an event that got this far may have its
    offset committed (`CommitGuard`): Faust also acks events it skipped during a rebalance, and
    events Faust never delivered are read from the log and handled first. A Kafka failure is not
    the event's fault: it ends the worker, and the event is redelivered to whoever takes the
    partition.
    """
    guard = stream.app.commit_guard
    guard.watch(stream.channel.topics, contiguous)
    try:
        async for event in stream.events():
            missed = guard.skipped(event.message)
            # Events Faust never delivered are read from the log first, in order; then this one,
            # unless the partition went to another worker meanwhile.
            if missed is not None and not await _handle_missed(stream, event.message, missed, cls, stage, handle):
                continue
            if not await still_ours(stream.app, event.message):
                continue
            await _handle_one(event, cls, stage, handle)
            guard.finish(event.message)  # only now may Faust commit past it (streams/kafka/commit_guard.py)
    except Exception as exc:
        die(stage, exc)


async def still_ours(app: Any, message: Any) -> bool:
    """Whether this worker still owns the event's partition, asked right before its handler runs.

    An event can wait through a rebalance: Faust delivered it before the partition was revoked,
    and the stage was still busy (reading a skipped range from the log takes a round trip or
    more). Handled after the revocation, its table writes would come from a zombie, and worse,
    from a table that no longer holds the partition (Faust's memory store drops the keys of
    partitions it lost when recovery completes): a tenant's budget was once rewritten from
    nothing this way. The new owner reads the event from the committed offset, so it is left
    alone here. The budget stage writes its table before its first await, so the answer holds
    for its writes; a handler that writes after an await asks again (`TaskRunner.owns`).
    During a rebalance this waits until ownership is known again.
    """
    while not ownership_settled(app):
        await asyncio.sleep(0.05)
    if message.partition in active_partitions(app, message.topic):
        return True
    log.info(
        "%s[%s]@%s: not handled here, the partition was reassigned while it waited",
        message.topic, message.partition, message.offset,
    )
    return False


async def _handle_one(event: Any, cls: type[T], stage: str, handle: Handler[T]) -> None:
    record = await decode_or_dead_letter(event, cls)
    if record is None:
        return
    try:
        await handle(record, event)
    except (KafkaError, ProducerSendError):
        raise
    except Exception as exc:
        log.exception("%s failed on %s[%s]@%s", stage, event.message.topic, event.message.partition, event.message.offset)
        await dead_letter(event, f"{stage} failed: {exc!r}"[:1000])


@dataclass(frozen=True)
class _Reread:
    """A record read straight from the log, shaped like the Faust event a stage handler gets."""

    message: Any
    value: bytes | None
    headers: dict[str, bytes]

    @classmethod
    def of(cls, record: Any, tp: Any) -> _Reread:
        message = SimpleNamespace(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
            value=record.value, headers=list(record.headers or ()), tp=tp,
        )
        return cls(message, record.value, {k: v for k, v in record.headers or ()})


async def _handle_missed(
    stream: Any, message: Any, missed: tuple[int, int], cls: type[T], stage: str, handle: Handler[T]
) -> bool:
    """Handles offsets [first, end) of the message's partition, read from the log; False if the
    partition was reassigned meanwhile (the rest is the new owner's). A Kafka error ends the
    worker like any other (nothing past `first` was committed)."""
    first, end = missed
    bootstrap = stream.app.agentstream_settings.kafka_bootstrap_servers
    records = await read_range(bootstrap, message.topic, partition=message.partition, start_offset=first, end_offset=end)
    for record in records:
        reread = _Reread.of(record, message.tp)
        if not await still_ours(stream.app, reread.message):
            return False
        await _handle_one(reread, cls, stage, handle)
        stream.app.commit_guard.handled_by_hand(stream.app.consumer, reread.message)
    log.info("%s[%s]: handled %d missed event(s) from offset %d", message.topic, message.partition, len(records), first)
    return True


def die(stage: str, exc: BaseException) -> None:
    """An agent that raises can die silently while the worker looks healthy: end the process."""
    log.critical("agent %s crashed: %r; stopping the worker", stage, exc, exc_info=exc)
    sys.stderr.flush()
    os._exit(70)
