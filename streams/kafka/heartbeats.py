"""Keeps the worker's group membership alive while a partition assignment is being handled.

aiokafka starts a member's heartbeat task only after the assignment callback returns
(`GroupCoordinator.ensure_active_group`: rejoin, callback, then `_start_heartbeat_task`), so a
callback that runs longer than the session timeout gets the member thrown out of its group. The
table's catch-up read runs in that callback; with heartbeats started first it can read a whole
changelog at a plain consumer's speed instead of stopping after half the session timeout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.protocol.group import JoinGroupRequest

log = logging.getLogger(__name__)


def start_heartbeats_now(faust_consumer: Any) -> bool:
    """Starts the member's heartbeat task of Faust's consumer, on its thread's loop. False when
    the internals it relies on are not there (another aiokafka or Faust): the caller then keeps
    its work within the session timeout."""
    try:
        thread = faust_consumer._thread
        coordinator = thread._ensure_consumer()._coordinator
        loop = thread.thread_loop
    except AttributeError:
        log.warning("cannot start heartbeats during the assignment: aiokafka or Faust internals changed")
        return False
    return start_coordinator_heartbeats(coordinator, loop)


def start_coordinator_heartbeats(coordinator: Any, loop: asyncio.AbstractEventLoop) -> bool:
    """As aiokafka does right after the callback (a no-op then, since the task exists)."""
    start = getattr(coordinator, "_start_heartbeat_task", None)
    if start is None:
        log.warning("cannot start heartbeats during the assignment: aiokafka internals changed")
        return False
    if coordinator.member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID or coordinator.generation < 0:
        return False  # not a member (yet): nothing to keep alive
    loop.call_soon_threadsafe(start)
    return True
