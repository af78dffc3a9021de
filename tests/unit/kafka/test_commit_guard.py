"""Faust's own offset choice (the real `Consumer._new_offset`) commits past events its stream
skipped during a rebalance; behind the guard only handled events are committed."""

from __future__ import annotations

import asyncio
import time
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


async def test_events_skipped_without_an_ack_are_read_again_and_not_committed_past() -> None:
    # The kill loop with budgets lost 24 consecutive requests of one partition: fetched, then
    # dropped when a rebalance cancelled their delivery, never acked; the stage saw 161 -> 186.
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=None, acked=[])
    guard.install(c)
    guard.high[P0] = 136  # the committed offset after the rebalance was 137

    def see(offset: int) -> bool:
        return guard.skipped(c, SimpleNamespace(tp=P0, offset=offset))

    assert not see(137)
    assert see(162), "138..161 never reached the stage"
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 138)] and guard.gaps == 1
    handled(guard, 137, 162)
    ack(c, 137, 162)
    assert c._new_offset(P0) == 138, "137 may be committed; nothing past the skipped range"
    assert not see(163), "an event fetched before the seek is not a new gap"
    handled(guard, 163)
    ack(c, 163)
    assert c._new_offset(P0) is None
    assert not see(138), "the re-read reached the skipped range"
    handled(guard, *range(138, 162))
    ack(c, *range(138, 162))
    assert c._new_offset(P0) == 164


async def test_an_empty_range_is_sought_back_to_once_and_transactional_topics_are_not_checked() -> None:
    guard = CommitGuard()
    guard.watch([TOPIC])
    guard.watch(["agentstream.monitor.v1"], contiguous=False)
    c = consumer(committed=None, acked=[])
    guard.install(c)
    guard.high[P0] = 9
    assert guard.skipped(c, SimpleNamespace(tp=P0, offset=12))  # 10, 11: not on the log after all
    assert not guard.skipped(c, SimpleNamespace(tp=P0, offset=12)), "re-read from 10 starts at 12"
    assert not guard.skipped(c, SimpleNamespace(tp=P0, offset=13))
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 10)] and guard.gap_open == {}
    monitor = TP("agentstream.monitor.v1", 0)
    guard.high[monitor] = 0
    assert not guard.skipped(c, SimpleNamespace(tp=monitor, offset=5)), "commit markers take offsets"


async def test_a_batch_fetched_before_the_seek_back_cannot_make_faust_drop_the_re_read() -> None:
    """The kill loop lost 466 requests: the stage saw 147 -> 661 and the guard sought back to 148,
    but the rest of the batch fetched before the seek (662, 663, ...) moved Faust's read offset
    past 148 again, and Faust dropped every re-read message as already seen."""
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=148, acked=[])
    guard.install(c)
    read_offset, set_read_offset = c._read_offset.__getitem__, c._read_offset.__setitem__  # bound once, as Faust's loop does
    delivered: list[int] = []

    def deliver(offset: int) -> None:
        """Faust's consumer loop for one fetched message (`Consumer._drain_messages`)."""
        r_offset = read_offset(P0)
        if r_offset is None or offset >= r_offset:
            delivered.append(offset)
            set_read_offset(P0, offset)

    guard.high[P0] = 147
    deliver(661)
    assert guard.skipped(c, SimpleNamespace(tp=P0, offset=661))
    await asyncio.sleep(0)  # the seek back to 148 is done
    assert c.seeks == [(P0, 148)] and guard.rewinding == {P0: 661}
    for offset in (662, 663, 664):  # the rest of the old batch
        deliver(offset)
    for offset in range(148, 670):  # the re-read
        deliver(offset)
    assert delivered[:4] == [661, 662, 663, 664]
    assert delivered[4:] == list(range(148, 670)), "the re-read is delivered, not dropped"
    assert guard.rewinding == {} and c._read_offset[P0] == 669


def test_gap_fills_on_a_contiguous_topic_are_not_committed_past() -> None:
    """With the read offset held back, Faust records the stale batch as a gap (events it will
    never see); on a topic without transaction markers those are unread events, not offsets to skip."""
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


async def test_a_gap_not_read_again_is_sought_back_to_again() -> None:
    """A kill-loop run stalled three partitions: the seek back, made just as Faust finished its
    own seeks after a rebalance, never took effect, and nothing past the gap could be committed."""
    guard = CommitGuard()
    guard.watch([TOPIC])
    c = consumer(committed=109, acked=[])
    guard.install(c)
    guard.high[P0] = 108
    assert guard.skipped(c, SimpleNamespace(tp=P0, offset=239))
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 109)]
    sought = guard.sought_at[P0]
    guard.reseek_open_gaps(c, sought + 1.0)
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 109)], "the re-read gets a few seconds"
    c.app.rebalancing = True
    guard.reseek_open_gaps(c, sought + 60)
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 109)], "no seek in the middle of a rebalance"
    c.app.rebalancing = False
    guard.reseek_open_gaps(c, sought + 60)
    await asyncio.sleep(0)
    assert c.seeks == [(P0, 109), (P0, 109)] and guard.reseeks == 1
    assert not guard.skipped(c, SimpleNamespace(tp=P0, offset=109)), "the re-read came"
    guard.reseek_open_gaps(c, time.monotonic() + 600)
    await asyncio.sleep(0)
    assert len(c.seeks) == 2, "a gap read again is not sought again"
