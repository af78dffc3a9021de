"""Faust may commit an input offset only once a stage handler has finished that event.

Faust acks (and so commits) events its stream iterator *skipped* without handing them to the
agent: an event dequeued while flow control is suspended for a rebalance, or one delivered with
an older consumer generation (`faust/streams.py`, "We want to ack the filtered out message").
Such an event was never handled; once its offset is committed, the next owner of the partition
starts after it and the request is lost. And aiokafka's `seek_to_committed`, which Faust runs after
every rebalance, does not move a partition that has no committed offset (or offset 0): an event
fetched and then dropped while the flow was paused for that rebalance (Faust's consumer loop
cancels the delivery and still advances its read offset) is then never read again; the kill loop
lost the first request of a partition that way, twice. Faust's check for a hole at the head of the acked
offsets is off by one and skipped while the partition has no committed offset (0 or None,
`Consumer._new_offset`), so a late ack can also carry the commit over events not handled yet.

The guard keeps, per partition, the offsets `envelope.consume` finished. Before Faust picks the
offset to commit, it drops every acked offset that is not among them, remembers the lowest as a
hole, commits nothing at or past the hole, and seeks the partition back to it; and after a rebalance it seeks a
partition with nothing committed to its beginning. Re-reading is safe: every stage is at-least-once and deduplicates by request id.

On a topic written in transactions (the monitor's input) each commit marker takes an offset that
no consumer is given. Faust fills such offsets in from its gap bookkeeping, but not the first one
of a partition (its gap check reads a read offset of 0 as none), so the head of the acked
offsets can sit past the committed position for good. There the guard reads the offsets in
between from the log: the ones that hold no committed record are skipped in the commit, and a
record among them that no stage finished is a hole like any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.structs import TopicPartition

log = logging.getLogger("agentstream")

RESEEK_AFTER_S = 5.0  # a seek back to a hole that brought nothing back by then is made again
PROBE_MAX = 1000  # offsets read from the log at once to tell commit markers from records

# (topic, partition, start, end) -> offsets in [start, end) that hold a committed record
RecordOffsets = Callable[[str, int, int, int], Awaitable[set[int]]]



class CommitGuard:
    """Offsets handled by our stages, and the filter installed on Faust's consumer."""

    def __init__(self, record_offsets: RecordOffsets | None = None) -> None:
        self.record_offsets = record_offsets  # None: transactional topics keep Faust's behaviour
        self.not_records: defaultdict[Any, set[int]] = defaultdict(set)  # markers, aborted records
        self.probes: dict[Any, asyncio.Task[None]] = {}
        self.topics: set[str] = set()
        self.finished: defaultdict[Any, set[int]] = defaultdict(set)
        self.holes: dict[Any, int] = {}  # lowest offset acked unhandled, until it is handled
        self.rewound: dict[Any, tuple[int, int, float]] = {}  # (hole, generation, when) sought back to
        self.dropped = 0  # acks of events that were never handled (for the log and tests)
        # Topics written without transactions: their offsets have no gaps, so a stage that sees
        # offset N+k right after N was not given N+1..N+k-1.
        self.contiguous: set[str] = set()
        self.high: dict[Any, int] = {}  # highest offset a stage saw per partition (start - 1 at first)
        self.gaps = 0  # skipped ranges found (for the log and tests)

    def watch(self, topics: Iterable[str], contiguous: bool = True) -> None:
        """Guard these input topics (called when a stage starts consuming them); `contiguous`
        when nothing writes them in transactions (whose commit markers take offsets)."""
        topics = set(topics)
        self.topics.update(topics)
        if contiguous:
            self.contiguous.update(topics)

    def skipped(self, message: Any) -> tuple[int, int] | None:
        """The offsets [first, end) before this message that were never given to the stage, or
        None. Faust's consumer advances its read offset past a fetched batch whose delivery a
        rebalance cancelled, and after its seek back to the committed offset the rest of a
        batch fetched before that seek can still arrive and move its read offset past the
        re-read, which it then drops as already read. The caller reads the missed range
        straight from the log and handles it, in order, before this message
        (`envelope.consume`): no seek, so no race with the fetcher."""
        tp = message.tp
        if tp.topic not in self.contiguous:
            return None
        high = self.high.get(tp)  # the highest offset the stage saw since the assignment
        self.high[tp] = message.offset if high is None else max(high, message.offset)
        if high is None or message.offset <= high + 1:
            return None
        self.gaps += 1
        log.warning(
            "%s[%s]: offset %d arrived after %d; reading %d..%d from the log (events skipped in a rebalance)",
            tp.topic, tp.partition, message.offset, high, high + 1, message.offset - 1,
        )
        return high + 1, message.offset

    def handled_by_hand(self, consumer: Any, message: Any) -> None:
        """A missed event read from the log and handled: acked the way Faust acks the events it
        delivers, so that its offset can be committed."""
        self.finish(message)
        tp, offset = message.tp, message.offset
        committed = consumer._committed_offset[tp]
        if (committed is None or offset >= committed) and offset not in consumer._acked_index[tp]:
            consumer._acked[tp].append(offset)
            consumer._acked_index[tp].add(offset)

    def finish(self, message: Any) -> None:
        """The stage is done with this event: its offset may be committed."""
        self.finished[message.tp].add(message.offset)

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked: the next owner starts at the committed offset, which the guard kept
        at or below any hole; what was finished here is Faust's to commit no more."""
        for tp in tps:
            self.not_records.pop(tp, None)
            probe = self.probes.pop(tp, None)
            if probe is not None:
                probe.cancel()
            self.finished.pop(tp, None)
            self.holes.pop(tp, None)
            self.rewound.pop(tp, None)
            self.high.pop(tp, None)

    def committable(self, consumer: Any, tp: Any) -> bool:
        """Cleans `consumer._acked[tp]` of unhandled offsets; False while a hole is at the head.

        An offset Faust added to `acked` from its own gap bookkeeping (transaction markers have
        an offset but no message) is not in `_acked_index` and is left alone."""
        if tp.topic not in self.topics:
            return True
        acked: list[int] = consumer._acked[tp]
        if consumer._gap.get(tp):
            if tp.topic in self.contiguous:
                # No transaction markers here, so a "gap" in Faust's bookkeeping is a range its
                # consumer skipped (see `skipped`): events not handled yet, never offsets to skip.
                consumer._gap[tp] = type(consumer._gap[tp])()
            elif acked:
                _fill_gaps(consumer._gap[tp], acked)
        index: set[int] = consumer._acked_index[tp]
        done = self.finished.get(tp, set())
        unhandled = sorted(o for o in acked if o in index and o not in done)
        if unhandled:
            self.dropped += len(unhandled)
            log.info(
                "not committing %d offset(s) of %s[%s] acked without being handled: %s",
                len(unhandled), tp.topic, tp.partition, unhandled[:5],
            )
            skip = set(unhandled)
            acked[:] = [o for o in acked if o not in skip]
            index.difference_update(skip)
            self.holes[tp] = min(self.holes.get(tp, unhandled[0]), unhandled[0])
        committed = consumer._committed_offset[tp]  # the next offset to read, or None
        if committed is not None:
            done.difference_update([o for o in done if o < committed])
        if tp.topic not in self.contiguous and committed is not None and acked:
            self._skip_markers(consumer, tp, committed, acked, done)
        hole = self.holes.get(tp)
        if hole is not None:
            if hole in acked or (committed is not None and committed > hole):
                del self.holes[tp]  # handled since (after a seek back, or redelivered)
            elif not acked or min(acked) > hole:
                self._rewind(consumer, tp, hole)
                return False
        # False: an event at the committed position is not handled yet.
        return committed is None or not acked or min(acked) <= committed

    def _skip_markers(self, consumer: Any, tp: Any, committed: int, acked: list[int], done: set[int]) -> None:
        """Fills known markers between the committed position and the acked offsets into
        `acked` (as Faust's gap fills are: not in its acked index), or reads that range from the
        log to learn which they are."""
        markers = self.not_records[tp]
        markers.difference_update([o for o in markers if o < committed])
        head = min(acked)
        if head <= committed:
            return
        between = range(committed, head)
        if all(o in markers for o in between):
            acked.extend(between)
            acked.sort()
            return
        if self.record_offsets is not None and tp not in self.probes:
            end = min(head, committed + PROBE_MAX)
            task = asyncio.ensure_future(self._probe(tp, committed, end, done))
            self.probes[tp] = task
            task.add_done_callback(_log_failure)

    async def _probe(self, tp: Any, start: int, end: int, done: set[int]) -> None:
        try:
            assert self.record_offsets is not None
            records = await self.record_offsets(tp.topic, tp.partition, start, end)
            self.not_records[tp].update(o for o in range(start, end) if o not in records)
            unhandled = sorted(o for o in records if o not in done)
            if unhandled:
                self.holes[tp] = min(self.holes.get(tp, unhandled[0]), unhandled[0])
        finally:
            self.probes.pop(tp, None)

    def _rewind(self, consumer: Any, tp: Any, hole: int) -> None:
        """Reads the partition again from the hole: with no committed offset there is no seek
        after a rebalance, so a skipped event would otherwise never come back. A seek can be
        lost (the rest of a batch fetched before it moves Faust's read offset past the re-read,
        see `skipped`), so one not answered within `RESEEK_AFTER_S` is made again."""
        app = consumer.app
        generation = int(getattr(app, "consumer_generation_id", 0) or 0)
        if app.rebalancing or tp not in consumer.assignment():
            return
        last = self.rewound.get(tp)
        now = time.monotonic()
        if last is not None and last[:2] == (hole, generation) and now - last[2] < RESEEK_AFTER_S:
            return
        self.rewound[tp] = (hole, generation, now)
        log.info("reading %s[%s] again from offset %d (acked there without being handled)", tp.topic, tp.partition, hole)
        task = asyncio.ensure_future(consumer.seek(tp, hole))
        task.add_done_callback(_log_failure)

    def install(self, consumer: Any) -> None:
        """Wraps `Consumer._new_offset`, the one place Faust picks the offset to commit, and
        `seek_to_committed`, which Faust runs after every rebalance."""
        original = consumer._new_offset

        def new_offset(tp: Any) -> int | None:
            if not self.committable(consumer, tp):
                return None
            return original(tp)  # type: ignore[no-any-return]

        consumer._new_offset = new_offset
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_committed_or_beginning() -> Any:
            committed = await seek_to_committed()
            fresh = [
                TopicPartition(tp.topic, tp.partition)
                for tp, offset in committed.items()
                if tp.topic in self.topics and (offset is None or offset <= 0)
            ]
            for tp, offset in committed.items():
                if tp.topic in self.contiguous and offset is not None and offset > 0:
                    self.high[TopicPartition(tp.topic, tp.partition)] = offset - 1
            if fresh:
                # A concrete offset, not aiokafka's lazy `seek_to_beginning`: while that reset is
                # pending the position is None, and Faust's livelock check asserts on it.
                for tp, offset in (await consumer.earliest_offsets(*fresh)).items():
                    await consumer.seek(tp, offset)
                    if tp.topic in self.contiguous:
                        self.high[TopicPartition(tp.topic, tp.partition)] = offset - 1
            return committed

        consumer.seek_to_committed = seek_to_committed_or_beginning


def _fill_gaps(gaps: Any, acked: list[int]) -> None:
    """Adds the offsets of Faust's gap intervals (commit markers) up to the highest acked offset
    to `acked`, each once. Faust does this itself in `_new_offset`, but every gap it records runs
    up to and including the record after it, which is acked too: the duplicate breaks its run of
    consecutive offsets, so each commit went past one responder transaction only (about 5
    offsets a second, far behind the answers). Offsets past the highest acked one stay in the
    tree until their record is acked (filled now, that record's own ack would add it twice)."""
    top = max(acked)
    have = set(acked)
    fill = {o for iv in gaps.overlap(0, top + 1) for o in range(iv.begin, min(iv.end, top + 1)) if o not in have}
    acked[:] = sorted(have | fill)
    gaps.chop(0, top + 1)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("commit guard: a seek back or a read of the log failed: %r (the next rebalance retries)", task.exception())
