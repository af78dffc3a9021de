"""Keeps the worker's group membership alive while a partition assignment is being handled.

aiokafka starts a member's heartbeat task only after the assignment callback returns
(`GroupCoordinator.ensure_active_group`: rejoin, callback, then `_start_heartbeat_task`), so a
callback that runs longer than the session timeout gets the member thrown out of its group. The
table's catch-up read runs in that callback; with heartbeats started first it can read a whole
changelog at a plain consumer's speed instead of stopping after half the session timeout. The
heartbeats also tell when the group starts another rebalance: the read must stop then, or every
other member waits for this one until the rebalance timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.protocol.group import JoinGroupRequest

log = logging.getLogger(__name__)

# True while the member is in the generation it was assigned in and no rejoin is pending.
StillMember = Callable[[], bool]


def start_heartbeats_now(faust_consumer: Any, generation: int | None = None) -> StillMember | None:
    """Starts the member's heartbeat task of Faust's consumer, on its thread's loop. None when
    that is not possible (other aiokafka or Faust internals, a consumer stopping, another
    generation): the caller then keeps its work within the session timeout."""
    try:
        thread = faust_consumer._thread
        coordinator = thread._ensure_consumer()._coordinator
        loop = thread.thread_loop
    except Exception as exc:  # internals changed, or the consumer is not running
        log.warning("cannot start heartbeats during the assignment: %r", exc)
        return None
    return start_coordinator_heartbeats(coordinator, loop, generation)


def start_coordinator_heartbeats(
    coordinator: Any, loop: asyncio.AbstractEventLoop, generation: int | None = None
) -> StillMember | None:
    """As aiokafka does right after the callback (a no-op then, since the task exists)."""
    start = getattr(coordinator, "_start_heartbeat_task", None)
    if start is None or not hasattr(coordinator, "_rejoin_needed_fut"):
        log.warning("cannot start heartbeats during the assignment: aiokafka internals changed")
        return None
    member_id, assigned_in = coordinator.member_id, coordinator.generation
    if member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID or assigned_in < 0:
        return None  # not a member (yet): nothing to keep alive
    if generation is not None and assigned_in != generation:
        return None  # the assignment being handled is already superseded
    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the consumer's loop is closed: stopping
        return None

    def still_member() -> bool:
        # Read from another thread: plain attribute reads, each consistent under the GIL.
        return (
            not coordinator._rejoin_needed_fut.done()
            and coordinator.generation == assigned_in
            and coordinator.member_id == member_id
        )

    return still_member
