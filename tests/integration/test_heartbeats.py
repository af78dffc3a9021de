"""A member whose assignment callback outlasts the group's session timeout stays in its group
when it starts its heartbeats first (the table's catch-up read runs in that callback), and it
learns within a heartbeat when another member joins, so it can stop and let the group go on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from streams.kafka.heartbeats import start_coordinator_heartbeats
from tests.harness import new_topic

SESSION_MS = 6000
CALLBACK_S = 10.0  # longer than the session timeout


class SlowAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """The first assignment takes CALLBACK_S, or until the probe says another rebalance began."""

    def __init__(self, heartbeats: bool) -> None:
        self.heartbeats = heartbeats
        self.consumer: AIOKafkaConsumer | None = None
        self.still_member: Callable[[], bool] | None = None
        self.generations: list[int] = []
        self.left_early_after: float | None = None

    async def on_partitions_revoked(self, revoked: object) -> None: ...

    async def on_partitions_assigned(self, assigned: object) -> None:
        assert self.consumer is not None
        coordinator = self.consumer._coordinator
        self.generations.append(coordinator.generation)
        if len(self.generations) > 1:
            return  # a rejoin: quick
        loop = asyncio.get_running_loop()
        if self.heartbeats:
            self.still_member = start_coordinator_heartbeats(coordinator, loop, coordinator.generation)
        started = loop.time()
        while loop.time() - started < CALLBACK_S:
            if self.still_member is not None and not self.still_member():
                self.left_early_after = loop.time() - started
                return
            await asyncio.sleep(0.2)


def member(bootstrap: str, topic: str, listener: ConsumerRebalanceListener | None = None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"{topic}-g", session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=1000, auto_offset_reset="earliest",
    )
    consumer.subscribe([topic], listener=listener)
    return consumer


async def poll(consumer: AIOKafkaConsumer, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await consumer.getmany(timeout_ms=500)


async def slow_member(bootstrap: str, heartbeats: bool, joiner_after_s: float | None = None) -> SlowAssignment:
    topic = await new_topic(bootstrap, "hb", 2)
    listener = SlowAssignment(heartbeats)
    consumer = member(bootstrap, topic, listener)
    listener.consumer = consumer
    await consumer.start()
    other: AIOKafkaConsumer | None = None
    try:
        if joiner_after_s is None:
            # Poll as a worker would; after the slow callback, a member the group dropped rejoins.
            await poll(consumer, CALLBACK_S + 15)
        else:
            polling = asyncio.ensure_future(poll(consumer, CALLBACK_S + 15))
            await asyncio.sleep(joiner_after_s)
            other = member(bootstrap, topic)
            await other.start()
            await asyncio.gather(polling, poll(other, CALLBACK_S + 10))
        return listener
    finally:
        await consumer.stop()
        if other is not None:
            await other.stop()


async def test_a_long_callback_keeps_its_membership_only_with_heartbeats(bootstrap: str) -> None:
    kept, dropped = await asyncio.gather(
        slow_member(bootstrap, heartbeats=True),
        slow_member(bootstrap, heartbeats=False),
    )
    assert kept.still_member is not None
    assert len(kept.generations) == 1, f"the member was dropped and rejoined: {kept.generations}"
    assert kept.left_early_after is None, "nothing else joined: the callback ran its course"
    assert len(dropped.generations) >= 2, "without heartbeats the group drops a member that long"


async def test_a_member_joining_meanwhile_ends_the_long_callback_early(bootstrap: str) -> None:
    slow = await slow_member(bootstrap, heartbeats=True, joiner_after_s=3.0)
    assert slow.left_early_after is not None, "the probe never saw the group rebalance again"
    assert slow.left_early_after < 3.0 + 4.0, f"seen only after {slow.left_early_after:.1f}s"
    assert len(slow.generations) >= 2, "it rejoined with the newcomer"
