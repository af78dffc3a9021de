"""The stage skeleton hands an event to its handler only while this worker owns its partition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from streams.kafka import envelope

TOPIC = "agentstream.budget.v1"


class Guard:
    """The commit guard's side of `consume`: which offsets were finished, which were missed."""

    def __init__(self, missed: dict[int, tuple[int, int]] | None = None) -> None:
        self.missed = missed or {}
        self.finished: list[tuple[int, int]] = []
        self.by_hand: list[tuple[int, int]] = []

    def watch(self, topics: Any, contiguous: bool) -> None:
        return None

    def skipped(self, message: Any) -> tuple[int, int] | None:
        return self.missed.pop(message.offset, None)

    def finish(self, message: Any) -> None:
        self.finished.append((message.partition, message.offset))

    def handled_by_hand(self, consumer: Any, message: Any) -> None:
        self.by_hand.append((message.partition, message.offset))


def _app(guard: Guard, actives: list[int]) -> Any:
    completed = asyncio.Event()
    completed.set()
    return SimpleNamespace(
        commit_guard=guard,
        rebalancing=False,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
        assignor=SimpleNamespace(_assignment=SimpleNamespace(actives={TOPIC: actives})),
        agentstream_settings=SimpleNamespace(kafka_bootstrap_servers="unused:9092"),
        consumer=None,
    )


def _event(partition: int, offset: int) -> Any:
    message = SimpleNamespace(
        topic=TOPIC, partition=partition, offset=offset, key=b"k", value=b"v", headers=[], tp=(TOPIC, partition)
    )
    return SimpleNamespace(message=message, value=b"v", headers={})


def _stream(app: Any, events: list[Any], between: Any = None) -> Any:
    async def gen() -> AsyncIterator[Any]:
        for ev in events:
            if between is not None:
                await between(ev)
            yield ev

    return SimpleNamespace(app=app, channel=SimpleNamespace(topics=[TOPIC]), events=gen)


async def _consume(stream: Any, handle: Any) -> None:
    """`consume` over a finite stream, bounded: a stage that waits forever fails the test."""
    await asyncio.wait_for(envelope.consume(stream, int, "budgets", handle), 5)


@pytest.fixture(autouse=True)
def _plain_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    async def decode(event: Any, cls: Any) -> Any:
        return event.message.offset

    monkeypatch.setattr(envelope, "decode_or_dead_letter", decode)


async def test_events_of_partitions_this_worker_lost_are_left_to_the_new_owner() -> None:
    guard = Guard()
    app = _app(guard, actives=[0])
    handled: list[int] = []

    async def handle(offset: int, event: Any) -> None:
        handled.append(offset)

    await _consume(_stream(app, [_event(0, 5), _event(1, 7), _event(0, 6)]), handle)
    assert handled == [5, 6]
    assert guard.finished == [(0, 5), (0, 6)], "an event left alone is not marked for commit"


async def test_an_event_waits_out_a_rebalance_and_runs_only_if_its_partition_stayed() -> None:
    guard = Guard()
    app = _app(guard, actives=[0, 1])
    handled: list[int] = []

    async def handle(offset: int, event: Any) -> None:
        handled.append(offset)

    async def rebalance(ev: Any) -> None:
        if ev.message.offset == 8:
            # Delivered, then a rebalance starts; it ends with partition 1 elsewhere.
            app.rebalancing = True

            async def settle() -> None:
                await asyncio.sleep(0.2)
                app.assignor._assignment = SimpleNamespace(actives={TOPIC: [0]})
                app.rebalancing = False

            asyncio.get_running_loop().create_task(settle())

    events = [_event(1, 7), _event(1, 8), _event(0, 3)]
    await _consume(_stream(app, events, between=rebalance), handle)
    assert handled == [7, 3], "offset 8 of partition 1 arrived before the rebalance that moved it"
    assert guard.finished == [(1, 7), (0, 3)]


async def test_a_missed_range_stops_where_the_partition_was_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = Guard(missed={12: (10, 12)})
    app = _app(guard, actives=[1])
    handled: list[int] = []

    async def handle(offset: int, event: Any) -> None:
        handled.append(offset)
        if offset == 10:
            app.assignor._assignment = SimpleNamespace(actives={TOPIC: [0]})  # reassigned meanwhile

    async def read_range(bootstrap: str, topic: str, partition: int, start_offset: int, end_offset: int) -> list[Any]:
        return [
            SimpleNamespace(topic=topic, partition=partition, offset=o, key=b"k", value=b"v", headers=[])
            for o in range(start_offset, end_offset)
        ]

    monkeypatch.setattr(envelope, "read_range", read_range)
    await _consume(_stream(app, [_event(1, 12)]), handle)
    assert handled == [10], "offset 11 and the delivered 12 belong to the new owner"
    assert guard.by_hand == [(1, 10)] and guard.finished == []


async def test_an_event_held_through_a_rebalance_runs_once_its_partition_is_known_to_be_ours() -> None:
    guard = Guard()
    app = _app(guard, actives=[0, 1])
    handled: list[tuple[int, bool]] = []

    async def handle(offset: int, event: Any) -> None:
        handled.append((offset, app.rebalancing))

    async def rebalance(ev: Any) -> None:
        app.rebalancing = True

        async def settle() -> None:
            await asyncio.sleep(0.2)
            app.rebalancing = False  # the same partitions again

        asyncio.get_running_loop().create_task(settle())

    await _consume(_stream(app, [_event(0, 4)], between=rebalance), handle)
    assert handled == [(4, False)], "handled, and only after the rebalance was over"
    assert guard.finished == [(0, 4)]


def test_aiokafkas_reassignment_flag_keeps_ownership_unsettled() -> None:
    """Faust's `rebalancing` can be cleared by the previous recovery while the member rejoins;
    aiokafka's subscription says a reassignment is under way until the new one is installed."""
    from streams.kafka.app import ownership_settled

    app = _app(Guard(), actives=[0])
    subscription = SimpleNamespace(reassignment_in_progress=True)
    app._consumer = SimpleNamespace(_thread=SimpleNamespace(_consumer=SimpleNamespace(_subscription=subscription)))
    assert not ownership_settled(app)
    subscription.reassignment_in_progress = False
    assert ownership_settled(app)
