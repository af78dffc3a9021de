"""Starting a member's heartbeats from the assignment callback: through Faust's consumer
thread, on that thread's loop, and never for a consumer that is not a member."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams.kafka.heartbeats import start_coordinator_heartbeats, start_heartbeats_now


class Loop:
    def __init__(self) -> None:
        self.scheduled: list[Any] = []

    def call_soon_threadsafe(self, fn: Any) -> None:
        self.scheduled.append(fn)


def coordinator(member_id: str = "m-1", generation: int = 3) -> Any:
    c = SimpleNamespace(member_id=member_id, generation=generation, started=0)
    c._start_heartbeat_task = lambda: setattr(c, "started", c.started + 1)
    return c


def test_started_on_the_consumer_threads_loop() -> None:
    coord, loop = coordinator(), Loop()
    thread = SimpleNamespace(thread_loop=loop, _ensure_consumer=lambda: SimpleNamespace(_coordinator=coord))
    assert start_heartbeats_now(SimpleNamespace(_thread=thread))
    assert coord.started == 0, "scheduled on the thread's loop, not called from this one"
    [scheduled] = loop.scheduled
    scheduled()
    assert coord.started == 1


def test_not_a_member_or_other_internals_start_nothing() -> None:
    loop = Loop()
    assert not start_coordinator_heartbeats(coordinator(member_id=""), loop)  # type: ignore[arg-type]
    assert not start_coordinator_heartbeats(coordinator(generation=-1), loop)  # type: ignore[arg-type]
    assert not start_coordinator_heartbeats(SimpleNamespace(member_id="m", generation=1), loop)  # type: ignore[arg-type]
    assert not start_heartbeats_now(SimpleNamespace())
    assert loop.scheduled == []
