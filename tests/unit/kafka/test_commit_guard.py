"""Faust's own offset choice (the real `Consumer._new_offset`) commits past events its stream
skipped during a rebalance; behind the guard only handled events are committed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import MethodType, SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

from streams.kafka.commit_guard import CommitGuard

TOPIC = "agentstream.routed.v1"
P0 = TP(TOPIC, 0)


def consumer(committed: int | None, acked: list[int]) -> Any:
    """The state `_new_offset` reads, with Faust's real method bound to it."""
    seeks: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp, offset))
        c._read_offset[tp] = offset  # as Faust's `Consumer.seek` does

    c = SimpleNamespace(
        _acked=defaultdict(list, {P0: list(acked)}),
        _acked_index=defaultdict(set, {P0: set(acked)}),
        _gap=defaultdict(list),
        _committed_offset=defaultdict(lambda: None, {P0: committed}),
        _read_offset=defaultdict(lambda: None),
        app=SimpleNamespace(rebalancing=False, consumer_generation_id=4),
        assignment=lambda: {P0},
        seek=seek,
        seeks=seeks,
        seek_to_committed=None,  # replaced where a test needs it
    )
    c._new_offset = MethodType(Consumer._new_offset, c)
    return c


def ack(c: Any, *offsets: int) -> None:
    for offset in offsets:
        c._acked[P0].append(offset)
        c._acked_index[P0].add(offset)


def handled(guard: CommitGuard, *offsets: int) -> None:
    for offset in offsets:
        guard.finish(SimpleNamespace(tp=P0, offset=offset))


def test_faust_alone_commits_past_a_skipped_event() -> None:
    # Offset 0 is still waiting to be handled, 1 was skipped (flow control suspended) and acked.
    assert consumer(committed=None, acked=[1])._new_offset(P0) == 2
    # Off by one: with 5 committed (the next to read) and 5 not acked, 6 alone is committed past it.
    assert consumer(committed=5, acked=[6])._new_offset(P0) == 7


def test_guard_commits_only_handled_events() -> None:
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=None, acked=[0, 1, 2])
    guard.install(c)
    handled(guard, 0, 2)  # 1 was acked by the skip path, never handled
    assert c._new_offset(P0) == 1
    assert guard.dropped == 1
    assert 1 not in c._acked_index[P0], "redelivered 1 must be ackable again"


async def test_the_first_event_of_a_partition_skipped_before_any_commit_is_read_again() -> None:
    # The kill loop's loss: offset 0 was skipped (and acked) during a rebalance, 1 and 2 were
    # handled; with no committed offset Faust's seek leaves the position at 3.
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=None, acked=[0, 1, 2])
    guard.install(c)
    handled(guard, 1, 2)
    assert c._new_offset(P0) is None, "nothing may be committed past the skipped event"
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 0)], "the partition is read again from the skipped event"
    assert c._new_offset(P0) is None and c.seeks == [(P0, 0)], "one seek per hole"
    handled(guard, 0)  # redelivered after the seek, handled this time
    ack(c, 0)
    assert c._new_offset(P0) == 3


def test_offsets_faust_filled_from_its_gap_bookkeeping_are_not_unhandled() -> None:
    # A transaction marker has an offset but no message: Faust fills it in `acked` (not in the
    # acked index); the guard must not take it for a skipped event.
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=5, acked=[5, 7])
    c._acked_index[P0] = {5, 7}
    c._acked[P0].insert(1, 6)  # the marker, left in `acked` by an earlier gap fill
    guard.install(c)
    handled(guard, 5, 7)
    assert c._new_offset(P0) == 8 and guard.dropped == 0


def test_guard_refuses_a_hole_at_the_committed_position() -> None:
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=5, acked=[6, 7])
    guard.install(c)
    handled(guard, 6, 7)
    assert c._new_offset(P0) is None
    c._acked[P0][:0] = [5]
    handled(guard, 5)
    assert c._new_offset(P0) == 8


async def test_unwatched_topics_and_forgotten_partitions() -> None:
    guard = CommitGuard()
    c = consumer(committed=None, acked=[0, 1])
    guard.install(c)
    assert c._new_offset(P0) == 2, "a topic no stage consumes keeps Faust's behaviour"
    guard.watch([TOPIC])
    handled(guard, 0, 1)
    guard.forget([P0])
    c2 = consumer(committed=None, acked=[0, 1])
    guard.install(c2)
    assert c2._new_offset(P0) is None, "what was handled before a revoke is not committed after it"


async def test_after_a_rebalance_a_partition_with_nothing_committed_is_read_from_its_beginning() -> None:
    # aiokafka's seek_to_committed leaves such a partition where its fetch position was: past an
    # event Faust fetched and dropped while the flow was paused.
    from aiokafka.structs import TopicPartition

    routed, other, changelog = (TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1),
                                TopicPartition("app-sessions-changelog", 0))
    async def seek_to_committed() -> dict[Any, int | None]:
        return {routed: None, other: 42, changelog: None}

    async def earliest_offsets(*tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 7)

    c = consumer(committed=None, acked=[])
    c.seek_to_committed = seek_to_committed  # what the guard wraps
    c.earliest_offsets = earliest_offsets
    guard = CommitGuard()
    guard.watch([TOPIC])
    guard.install(c)
    assert await c.seek_to_committed() == {routed: None, other: 42, changelog: None}
    assert c.seeks == [(routed, 7)], "only guarded input topics, only those with nothing committed"


async def test_events_skipped_without_an_ack_are_handled_from_the_log_before_the_next() -> None:
    # The kill loop with budgets lost 24 consecutive requests of one partition: fetched, then
    # dropped when a rebalance cancelled their delivery, never acked; the stage saw 161 -> 186.
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=137, acked=[])
    guard.install(c)
    guard.high[P0] = 136  # the committed offset after the rebalance was 137

    def see(offset: int) -> tuple[int, int] | None:
        return guard.skipped(SimpleNamespace(tp=P0, offset=offset))

    assert see(137) is None
    handled(guard, 137)
    ack(c, 137)
    assert see(162) == (138, 162), "138..161 never reached the stage"
    assert c.seeks == [] and guard.gaps == 1, "read from the log, not sought"
    assert c._new_offset(P0) == 138, "137 may be committed; nothing of the missed range yet"
    c._committed_offset[P0] = 138  # as Faust records a commit
    for offset in range(138, 150):  # the missed range, handled one by one from the log
        guard.handled_by_hand(c, SimpleNamespace(tp=P0, offset=offset))
    assert c._new_offset(P0) == 150, "committed as far as the missed range was handled"
    c._committed_offset[P0] = 150
    for offset in range(150, 162):
        guard.handled_by_hand(c, SimpleNamespace(tp=P0, offset=offset))
    handled(guard, 162)
    ack(c, 162)
    assert c._new_offset(P0) == 163
    assert see(163) is None and see(150) is None, "Faust delivering them again is not a new gap"


async def test_faust_seek_racing_a_stale_batch_is_covered_and_transactional_topics_are_not_checked() -> None:
    """The kill loop lost 466 requests once and stalled three partitions in another run: after
    Faust's seek back to the committed offset 148, the rest of a batch fetched before it (661...)
    arrived first and moved Faust's read offset past the re-read, which Faust then dropped."""
    guard = CommitGuard()
    guard.watch([TOPIC])
    guard.watch(["agentstream.monitor.v1"], contiguous=False)
    c = consumer(committed=148, acked=[])
    guard.install(c)
    guard.high[P0] = 147  # set by the wrapped seek_to_committed
    assert guard.skipped(SimpleNamespace(tp=P0, offset=661)) == (148, 661)
    assert guard.skipped(SimpleNamespace(tp=P0, offset=662)) is None
    assert guard.skipped(SimpleNamespace(tp=P0, offset=148)) is None, "a late re-read is a duplicate"
    monitor = TP("agentstream.monitor.v1", 0)
    guard.high[monitor] = 0
    assert guard.skipped(SimpleNamespace(tp=monitor, offset=5)) is None, "commit markers take offsets"


def test_gap_fills_on_a_contiguous_topic_are_not_committed_past() -> None:
    """When its read offset jumps, Faust records the range it jumped over as a gap and would
    commit across it; on a topic without transaction markers those are unread events."""
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=148, acked=[])
    guard.install(c)

    class Gaps(list):  # Faust's IntervalTree, as far as `_new_offset` uses it
        def overlap(self, begin: int, end: int) -> list[Any]:
            return [SimpleNamespace(begin=b, end=e) for b, e in self if b < end]

        def chop(self, begin: int, end: int) -> None:
            self.clear()

    c._gap[P0] = Gaps([(149, 662)])
    handled(guard, 148, 662)
    ack(c, 148, 662)
    assert c._new_offset(P0) == 149, "149..661 are not handled yet"


async def test_a_seek_back_to_a_hole_that_brings_nothing_back_is_made_again(monkeypatch) -> None:
    """The rest of a batch fetched before the seek can move Faust's read offset past the re-read:
    without a second seek the partition would wait for the next rebalance."""
    from streams.kafka import commit_guard

    clock = [100.0]
    monkeypatch.setattr(commit_guard.time, "monotonic", lambda: clock[0])
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=None, acked=[0, 1, 2])
    guard.install(c)
    handled(guard, 1, 2)
    assert c._new_offset(P0) is None
    clock[0] += 1
    assert c._new_offset(P0) is None
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 0)], "one seek while the re-read may still come"
    clock[0] += commit_guard.RESEEK_AFTER_S
    assert c._new_offset(P0) is None
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 0), (P0, 0)], "sought again once it did not"


MONITOR = TP("agentstream.monitor.v1", 0)


def monitor_consumer(committed: int | None, acked: list[int]) -> Any:
    c = consumer(committed=None, acked=[])
    c._acked, c._acked_index = defaultdict(list, {MONITOR: list(acked)}), defaultdict(set, {MONITOR: set(acked)})
    c._committed_offset = defaultdict(lambda: None, {MONITOR: committed})
    c.assignment = lambda: {MONITOR}
    return c


async def test_commit_markers_at_the_head_of_a_transactional_topic_are_committed_over() -> None:
    """The monitor's input is written in transactions: record 0, marker 1, record 2, marker 3 ...
    Faust never fills the first marker in (a read offset of 0 counts as none in its gap check),
    so the committed offset stayed at 1 for good and every restart re-read the whole topic."""
    reads: list[tuple[int, int]] = []

    async def record_offsets(topic: str, partition: int, start: int, end: int) -> set[int]:
        reads.append((start, end))
        return {o for o in range(start, end) if o % 2 == 0}  # even offsets are records

    guard = CommitGuard(record_offsets=record_offsets)
    guard.watch([MONITOR.topic], contiguous=False)
    c = monitor_consumer(committed=1, acked=[2, 3, 4])  # 3 was filled in by Faust's gap fill
    c._acked_index[MONITOR] = {2, 4}
    guard.install(c)
    for offset in (2, 4):
        guard.finish(SimpleNamespace(tp=MONITOR, offset=offset))
    assert c._new_offset(MONITOR) is None, "offset 1 is not known yet: the log is read first"
    await asyncio.sleep(0)
    assert reads == [(1, 2)] and guard.not_records[MONITOR] == {1}
    assert c._new_offset(MONITOR) == 5, "past the marker, up to everything handled"
    assert reads == [(1, 2)], "a marker is read from the log once"


async def test_a_record_at_the_head_of_a_transactional_topic_that_was_not_handled_is_a_hole() -> None:
    async def record_offsets(topic: str, partition: int, start: int, end: int) -> set[int]:
        return set(range(start, end))  # no markers there: 7 is a record

    guard = CommitGuard(record_offsets=record_offsets)
    guard.watch([MONITOR.topic], contiguous=False)
    c = monitor_consumer(committed=7, acked=[8])
    guard.install(c)
    guard.finish(SimpleNamespace(tp=MONITOR, offset=8))
    assert c._new_offset(MONITOR) is None
    await asyncio.sleep(0)
    assert guard.holes[MONITOR] == 7 and not guard.not_records[MONITOR]
    assert c._new_offset(MONITOR) is None, "never committed past the unhandled record"
    await asyncio.sleep(0)
    assert c.seeks == [(MONITOR, 7)], "read again from it, as any hole"


async def test_a_transactional_topic_is_committed_to_its_last_handled_record_in_one_round() -> None:
    """The responder writes the monitor's topic in transactions: records 0-1, marker 2, records
    3-4, marker 5 ... Faust records each marker as a gap running up to and including the next
    record, and its own fill added that record twice: one transaction per commit round."""
    from intervaltree import IntervalTree

    guard = CommitGuard()
    guard.watch([MONITOR.topic], contiguous=False)
    records = [o for o in range(30) if o % 3 != 2]
    c = monitor_consumer(committed=None, acked=[])
    c._gap = defaultdict(IntervalTree)
    guard.install(c)
    previous = None
    for offset in records:  # delivered, handled and acked in order, gaps as Faust records them
        if previous is not None and offset - previous > 1:
            c._gap[MONITOR].addi(previous + 1, offset + 1)
        previous = offset
        guard.finish(SimpleNamespace(tp=MONITOR, offset=offset))
        c._acked[MONITOR].append(offset)
        c._acked_index[MONITOR].add(offset)
    assert c._new_offset(MONITOR) == 29, "every record up to the last one, markers included"
    alone = monitor_consumer(committed=None, acked=[0, 1, 3, 4, 6])
    alone._gap = defaultdict(IntervalTree, {MONITOR: IntervalTree.from_tuples([(2, 4), (5, 7)])})
    assert alone._new_offset(MONITOR) == 4, "Faust alone stops at the first duplicate (3), short of 7"
