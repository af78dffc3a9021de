"""Events Faust never delivered are read from the log and handled before the next one: against
the real broker, with the stage skeleton's own reading path (no Faust worker needed to stage it)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.events.codecs import get_codec
from streams.events.records import Request, now_ms
from streams.kafka import envelope
from streams.kafka.commit_guard import CommitGuard
from tests.harness import Pipeline


async def test_a_skipped_range_is_handled_in_order_from_the_log_and_acked(pipeline: Pipeline) -> None:
    await pipeline.create_topics()
    topic = pipeline.settings.topic("requests")
    codec = get_codec()
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    await producer.start()
    ids = [uuid.uuid4().hex for _ in range(6)]
    try:
        for rid in ids:
            req = Request(request_id=rid, session_id="s-missed", user_id="u", text="hi", created_ms=now_ms())
            await producer.send_and_wait(topic, codec.encode(req), key=b"s-missed", partition=2, headers=[("traceparent", rid.encode())])
        await producer.send_and_wait(topic, b"not avro", key=b"s-missed", partition=2)
    finally:
        await producer.stop()

    guard = CommitGuard()
    guard.watch([topic])
    tp = TP(topic, 2)
    faust_consumer = SimpleNamespace(
        _committed_offset=defaultdict(lambda: None, {tp: 1}),
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
    )
    recovered = asyncio.Event()
    recovered.set()
    app = SimpleNamespace(
        agentstream_settings=pipeline.settings,
        commit_guard=guard,
        consumer=faust_consumer,
        # Ownership as a worker that holds partition 2 sees it: no rebalance, recovery done.
        rebalancing=False,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=recovered)),
        assignor=SimpleNamespace(_assignment=SimpleNamespace(actives={topic: [2]})),
    )
    stream = SimpleNamespace(app=app)
    guard.high[tp] = 0  # the stage saw offset 0, then offset 6: Faust skipped 1..5
    revealing = SimpleNamespace(topic=topic, partition=2, offset=6, tp=tp)
    missed = guard.skipped(revealing)
    assert missed == (1, 6)

    seen: list[tuple[str, int, dict[str, Any]]] = []

    async def handle(req: Request, event: Any) -> None:
        seen.append((req.request_id, event.message.offset, dict(event.headers)))

    await envelope._handle_missed(stream, revealing, missed, Request, "test", handle)
    assert [(rid, offset) for rid, offset, _ in seen] == [(ids[i], i) for i in range(1, 6)], "in order, 1..5 only"
    assert all(headers["traceparent"] == rid.encode() for rid, _, headers in seen), "headers come along"
    assert faust_consumer._acked[tp] == [1, 2, 3, 4, 5] and guard.finished[tp] == {1, 2, 3, 4, 5}
