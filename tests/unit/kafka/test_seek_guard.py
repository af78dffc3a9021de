"""Recovery's seek waits for the fetch in flight, whose records would otherwise move the position
past the seek (and be dropped by Faust while the flow is stopped)."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.kafka import seek_guard


class Consumer:
    """Faust's consumer as the guard sees it: a fetch that returns when told to, and a seek."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = asyncio.Event()

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[str, list[int]]:
        self.events.append("fetch started")
        await self.release.wait()
        self.events.append("fetch returned")
        return {"records": [1, 2]}

    async def seek_wait(self, partitions: dict[str, int]) -> None:
        self.events.append(f"seek {partitions}")


async def test_a_seek_waits_for_the_fetch_in_flight() -> None:
    consumer = Consumer()
    seek_guard.install(consumer)
    fetch = asyncio.create_task(consumer._getmany(active_partitions={"p0"}, timeout=1.0))
    await asyncio.sleep(0)
    seek = asyncio.create_task(consumer.seek_wait({"p0": 0}))
    await asyncio.sleep(0.05)
    assert not seek.done(), "the seek went ahead with a fetch in flight"
    consumer.release.set()
    assert await fetch == {"records": [1, 2]}
    await seek
    assert consumer.events == ["fetch started", "fetch returned", "seek {'p0': 0}"]


async def test_a_seek_with_no_fetch_in_flight_goes_ahead_at_once() -> None:
    consumer = Consumer()
    seek_guard.install(consumer)
    consumer.release.set()
    await consumer._getmany(active_partitions=set(), timeout=1.0)
    await asyncio.wait_for(consumer.seek_wait({"p0": 5}), 0.5)
    assert consumer.events[-1] == "seek {'p0': 5}"


async def test_a_fetch_that_never_returns_delays_the_seek_only_so_long(monkeypatch: Any) -> None:
    monkeypatch.setattr(seek_guard, "WAIT_S", 0.1)
    consumer = Consumer()
    seek_guard.install(consumer)
    fetch = asyncio.create_task(consumer._getmany(active_partitions={"p0"}, timeout=1.0))
    await asyncio.sleep(0)
    await asyncio.wait_for(consumer.seek_wait({"p0": 0}), 2)
    assert consumer.events == ["fetch started", "seek {'p0': 0}"]
    fetch.cancel()
