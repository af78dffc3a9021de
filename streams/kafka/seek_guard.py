"""Recovery seeks only once no fetch is in flight.

Faust's fetcher thread keeps one `getmany` outstanding (up to 1 s). A rebalance stops the flow
but not that call, and recovery then seeks each active changelog partition to where its rebuild
starts. When the outstanding call was made before the rebalance and returns after the seek, it
carries the partition's records from the new position (aiokafka's position moves past them),
and Faust drops them because the flow is stopped ("getmany called while flow not active"): the
rebuild then waits for records below a position the consumer has already passed, forever. Seen
in the two-worker failover test, for a partition the survivor had read as a standby: recovery
waited at offset -1 of 23 with aiokafka's position at 24.

Faust has `Consumer.wait_for_stopped_flow()` for exactly this, but the event behind it is set,
never cleared, when a fetch starts (faust-streaming 0.11-0.15), so it never waits. This tracks
the fetches itself and makes `seek_wait`, which recovery uses, wait for the outstanding one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

WAIT_S = 10.0  # a fetch returns within Faust's 1 s getmany timeout; more means something is wrong


def install(consumer: Any) -> None:
    """Wraps the consumer's `_getmany` (count the fetches in flight) and `seek_wait`."""
    fetching = 0
    idle = asyncio.Event()
    idle.set()
    getmany, seek_wait = consumer._getmany, consumer.seek_wait

    async def counted_getmany(active_partitions: Any, timeout: float) -> Any:
        nonlocal fetching
        fetching += 1
        idle.clear()
        try:
            return await getmany(active_partitions=active_partitions, timeout=timeout)
        finally:
            fetching -= 1
            if not fetching:
                idle.set()

    async def seek_wait_after_fetch(partitions: Mapping[Any, int]) -> None:
        if not idle.is_set():
            try:
                await asyncio.wait_for(idle.wait(), WAIT_S)
            except TimeoutError:
                log.warning("a fetch still in flight after %.0fs: seeking anyway", WAIT_S)
        await seek_wait(partitions)

    consumer._getmany = counted_getmany
    consumer.seek_wait = seek_wait_after_fetch
