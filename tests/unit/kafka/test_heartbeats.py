"""Starting a member's heartbeats from the assignment callback: through Faust's consumer
thread, on that thread's loop, never for a consumer that is not a member of that generation,
and with a probe that turns false once the group wants this member to rejoin."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.kafka.heartbeats import start_coordinator_heartbeats, start_heartbeats_now


class Loop:
    def __init__(self, closed: bool = False) -> None:
        self.scheduled: list[Any] = []
        self.closed = closed

    def call_soon_threadsafe(self, fn: Any) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.scheduled.append(fn)


def coordinator(member_id: str = "m-1", generation: int = 3) -> Any:
    c = SimpleNamespace(member_id=member_id, generation=generation, started=0)
    c._start_heartbeat_task = lambda: setattr(c, "started", c.started + 1)
    c._rejoin_needed_fut = asyncio.Future(loop=asyncio.new_event_loop())
    return c


def test_started_on_the_consumer_threads_loop() -> None:
    coord, loop = coordinator(), Loop()
    thread = SimpleNamespace(thread_loop=loop, _ensure_consumer=lambda: SimpleNamespace(_coordinator=coord))
    still_member = start_heartbeats_now(SimpleNamespace(_thread=thread), generation=3)
    assert still_member is not None and still_member()
    assert coord.started == 0, "scheduled on the thread's loop, not called from this one"
    [scheduled] = loop.scheduled
    scheduled()
    assert coord.started == 1


def test_the_probe_turns_false_when_the_group_rebalances_again() -> None:
    coord = coordinator()
    still_member = start_coordinator_heartbeats(coord, Loop(), 3)  # type: ignore[arg-type]
    assert still_member is not None and still_member()
    coord._rejoin_needed_fut.set_result(None)  # a heartbeat answered "rebalance in progress"
    assert not still_member()
    coord2 = coordinator()
    probe2 = start_coordinator_heartbeats(coord2, Loop(), 3)  # type: ignore[arg-type]
    assert probe2 is not None
    coord2.generation = 4  # rejoined meanwhile
    assert not probe2()


def test_not_a_member_another_generation_or_other_internals_start_nothing() -> None:
    loop = Loop()
    assert start_coordinator_heartbeats(coordinator(member_id=""), loop) is None  # type: ignore[arg-type]
    assert start_coordinator_heartbeats(coordinator(generation=-1), loop) is None  # type: ignore[arg-type]
    assert start_coordinator_heartbeats(coordinator(generation=4), loop, 3) is None  # type: ignore[arg-type]
    assert start_coordinator_heartbeats(SimpleNamespace(member_id="m", generation=1), loop) is None  # type: ignore[arg-type]
    assert start_heartbeats_now(SimpleNamespace()) is None
    assert loop.scheduled == []
    assert start_coordinator_heartbeats(coordinator(), Loop(closed=True)) is None  # type: ignore[arg-type]

    def not_started() -> Any:
        raise RuntimeError("consumer not started")

    thread = SimpleNamespace(thread_loop=loop, _ensure_consumer=not_started)
    assert start_heartbeats_now(SimpleNamespace(_thread=thread)) is None
