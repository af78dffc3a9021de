"""A member whose assignment callback outlasts the group's session timeout stays in its group
when it starts its heartbeats first (the table's catch-up read runs in that callback)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka.heartbeats import start_coordinator_heartbeats

SESSION_MS = 6000
CALLBACK_S = 10.0  # longer than the session timeout


class SlowAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, heartbeats: bool) -> None:
        self.heartbeats = heartbeats
        self.consumer: AIOKafkaConsumer | None = None
        self.started: bool | None = None
        self.generations: list[int] = []

    async def on_partitions_revoked(self, revoked: object) -> None: ...

    async def on_partitions_assigned(self, assigned: object) -> None:
        assert self.consumer is not None
        coordinator = self.consumer._coordinator
        self.generations.append(coordinator.generation)
        if len(self.generations) > 1:
            return  # a rejoin: quick
        if self.heartbeats:
            self.started = start_coordinator_heartbeats(coordinator, asyncio.get_running_loop())
        await asyncio.sleep(CALLBACK_S)


async def generations_after_slow_callback(bootstrap: str, heartbeats: bool) -> SlowAssignment:
    topic = f"hb-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    listener = SlowAssignment(heartbeats)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"{topic}-g", session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=1000, auto_offset_reset="earliest",
    )
    listener.consumer = consumer
    consumer.subscribe([topic], listener=listener)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + CALLBACK_S + 15
        # Poll as a worker would; after the slow callback, a member the group dropped rejoins.
        while asyncio.get_running_loop().time() < deadline:
            await consumer.getmany(timeout_ms=500)
        return listener
    finally:
        await consumer.stop()


async def test_a_long_callback_keeps_its_membership_only_with_heartbeats(bootstrap: str) -> None:
    kept, dropped = await asyncio.gather(
        generations_after_slow_callback(bootstrap, heartbeats=True),
        generations_after_slow_callback(bootstrap, heartbeats=False),
    )
    assert kept.started is True
    assert len(kept.generations) == 1, f"the member was dropped and rejoined: {kept.generations}"
    assert len(dropped.generations) >= 2, "without heartbeats the group drops a member that long"
