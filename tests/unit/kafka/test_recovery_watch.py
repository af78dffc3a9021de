"""The recovery watch: which active changelog partitions count as stalled, and what a fresh fetch
resets (Faust's recovery and consumer state stood in for by their fields)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streams.kafka.recovery_watch import Stall, stalled, unstall

A, B, C, D = (TP("app-sessions-changelog", p) for p in range(4))


@dataclass
class Recovery:
    active_tps: set[TP]
    active_offsets: Counter[TP]
    active_highwaters: Counter[TP]
    _active_events_received_at: dict[TP, float] = field(default_factory=dict)
    _recovery_started_at: float | None = 100.0
    in_recovery: bool = True


@dataclass
class Consumer:
    _read_offset: dict[TP, int | None] = field(default_factory=lambda: defaultdict(lambda: None))
    _active_partitions: set[TP] = field(default_factory=set)
    _paused_partitions: set[TP] = field(default_factory=set)
    _buffered_partitions: set[TP] = field(default_factory=set)
    flow_active: bool = True
    seeks: list[dict[TP, int]] = field(default_factory=list)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(dict(partitions))
        for tp, offset in partitions.items():  # as Faust's driver does
            if offset > 0:
                self._read_offset[tp] = offset

    def resume_partitions(self, tps: list[TP]) -> None:
        self._active_partitions.update(tps)
        self._paused_partitions.difference_update(tps)


def test_only_partitions_with_records_left_and_none_read_for_a_while_are_stalled() -> None:
    recovery = Recovery(
        active_tps={A, B, C, D},
        active_offsets=Counter({A: -1, B: 40, C: 99, D: 10}),
        active_highwaters=Counter({A: 80, B: 99, C: 99, D: 50}),
        _active_events_received_at={B: 103.0, D: 109.0},
    )
    # A: nothing read since the start (100); B: last read at 103; C: complete; D: read just now.
    found = sorted(stalled(recovery, now=110.0, stall_s=6), key=lambda s: s.tp.partition)
    assert found == [Stall(A, 0, 80, 10.0), Stall(B, 41, 99, 7.0)]
    assert stalled(recovery, now=105.0, stall_s=6) == []
    recovery.in_recovery = False
    assert stalled(recovery, now=200.0, stall_s=6) == []


def test_an_event_from_before_this_recovery_does_not_count() -> None:
    recovery = Recovery(
        active_tps={A}, active_offsets=Counter({A: 5}), active_highwaters=Counter({A: 9}),
        _active_events_received_at={A: 50.0}, _recovery_started_at=100.0,
    )
    assert stalled(recovery, now=104.0, stall_s=6) == []
    assert [s.idle_s for s in stalled(recovery, now=107.0, stall_s=6)] == [7.0]


def test_a_fresh_fetch_seeks_to_the_next_offset_and_forgets_what_could_drop_records() -> None:
    consumer = Consumer(_read_offset=defaultdict(lambda: None, {A: 500}), _buffered_partitions={A})
    consumer._paused_partitions.add(A)
    app: Any = type("App", (), {"consumer": consumer})()
    asyncio.run(unstall(app, Stall(A, 41, 99, 7.0)))
    assert consumer.seeks == [{A: 41}]
    assert consumer._read_offset.get(A) is None, "no read offset left to drop records below 500"
    assert A in consumer._active_partitions and A not in consumer._paused_partitions
    assert A not in consumer._buffered_partitions
