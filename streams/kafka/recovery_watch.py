"""A changelog partition that Faust's recovery waits for while no record of it arrives.

The one cause seen (the two-worker failover test, about once in ten CI runs) is fixed in
`seek_guard`: a fetch made before the rebalance moved the consumer's position past the records
recovery had just sought to. Faust has other recovery hangs (PITFALLS), and a rebuild that waits
forever is a worker that never answers again, so this stays as the net under all of them: after
`STALL_S` without a record of an active partition that still has records to read, it logs the
partition's fetch state (read offset, position, paused and buffer-full sets) and sets all of it
afresh (seek to the next unread offset, no read offset, fetching resumed). A record read twice
is harmless: recovery skips offsets it has applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

STALL_S = 6.0


@dataclass(frozen=True)
class Stall:
    tp: Any
    next_offset: int
    highwater: int
    idle_s: float


def stalled(recovery: Any, now: float, stall_s: float = STALL_S) -> list[Stall]:
    """Active changelog partitions with records left to read and none read for `stall_s`."""
    started = recovery._recovery_started_at
    if not recovery.in_recovery or started is None:
        return []
    found = []
    for tp in list(recovery.active_tps):
        highwater = recovery.active_highwaters.get(tp)
        offset = recovery.active_offsets.get(tp)
        if highwater is None or offset is None or highwater <= offset:
            continue
        last = recovery._active_events_received_at.get(tp)
        idle = now - (started if last is None else max(last, started))
        if idle >= stall_s:
            found.append(Stall(tp, max(offset + 1, 0), highwater, idle))
    return found


def fetch_state(consumer: Any, tp: Any) -> dict[str, Any]:
    """What decides whether `tp`'s records reach recovery (for the log; best effort)."""
    state: dict[str, Any] = {
        "read_offset": consumer._read_offset.get(tp),
        "active": tp in (consumer._active_partitions or ()),
        "paused": tp in consumer._paused_partitions,
        "buffer_full": tp in consumer._buffered_partitions,
        "flow_active": consumer.flow_active,
    }
    try:
        kafka = consumer._thread._consumer
        tp_state = kafka._subscription.subscription.assignment.state_value(tp)
        state.update(position=tp_state._position, kafka_paused=tp_state.paused)
    except Exception as exc:  # the shape of aiokafka's internals is not ours to rely on
        state["kafka"] = repr(exc)
    return state


async def unstall(app: Any, stall: Stall) -> None:
    consumer = app.consumer
    log.warning(
        "recovery of %s got no record for %.0fs (next offset %d, highwater %d): fetching it afresh; %s",
        stall.tp, stall.idle_s, stall.next_offset, stall.highwater, fetch_state(consumer, stall.tp),
    )
    consumer._read_offset.pop(stall.tp, None)
    consumer._buffered_partitions.discard(stall.tp)
    await consumer.seek_wait({stall.tp: stall.next_offset})
    if stall.next_offset > 0:
        # seek_wait keeps records from this offset on; recovery itself skips ones it applied.
        consumer._read_offset.pop(stall.tp, None)
    consumer.resume_partitions([stall.tp])


async def watch_recovery(app: Any, every_s: float = 1.0) -> None:
    """Runs for the worker's life; one fresh fetch per partition per `STALL_S` at most."""
    recovery = app.tables.recovery
    while True:
        await asyncio.sleep(every_s)
        if not app.consumer.flow_active:
            continue  # between a rebalance and recovery's own seeks (`rebalancing` lasts all recovery)
        now = time.monotonic()
        for stall in stalled(recovery, now):
            try:
                await unstall(app, stall)
            except Exception:
                log.exception("could not restart the fetch of %s", stall.tp)
            recovery._active_events_received_at[stall.tp] = now  # the next check in STALL_S
