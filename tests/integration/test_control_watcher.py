"""The control watcher against the real broker: it applies the latest record per name, and it
says it has caught up as soon as its position reaches the topic's end, without first waiting
for records that will not come (the router's first request waits for that)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.control.watcher import ControlWatcher
from streams.events.codecs import get_codec
from streams.events.records import Control
from tests.harness import new_topic


async def following(watcher: ControlWatcher) -> asyncio.Task[None]:
    task = asyncio.create_task(watcher.follow())
    await asyncio.wait_for(watcher.caught_up.wait(), 30)
    return task


async def test_the_latest_record_per_name_is_the_state(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "control")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for percent in (10, 50):
            control = Control(name="rollout", percent=percent, candidate_version="v2", updated_ms=1)
            await producer.send_and_wait(topic, get_codec().encode(control), key=b"rollout")
    finally:
        await producer.stop()
    watcher = ControlWatcher(bootstrap, topic)
    task = await following(watcher)
    try:
        latest = watcher.get("rollout")
        assert latest is not None and latest.percent == 50 and latest.candidate_version == "v2"
        assert watcher.get("other") is None
    finally:
        task.cancel()


async def test_an_empty_topic_is_caught_up_without_waiting_for_records(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = await new_topic(bootstrap, "control")

    async def no_records_yet(self: AIOKafkaConsumer, *partitions: Any, timeout_ms: int = 0, **kw: Any) -> Any:
        await asyncio.Event().wait()  # nothing arrives: only a check before waiting can catch up

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", no_records_yet)
    watcher = ControlWatcher(bootstrap, topic)
    task = await following(watcher)
    try:
        assert watcher.latest == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
