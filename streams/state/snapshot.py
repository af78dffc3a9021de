"""A local copy of the `sessions` changelog, so a restarted worker reads only its tail.

The table still serves from memory (Faust's `memory://` store). This store adds, for each
changelog partition, a RocksDB database (rocksdict) holding the latest value of every key the
changelog has *acknowledged*, and the offset through which that holds. A write reaches the copy
only after the broker acknowledged it, never before, so a worker killed at any moment leaves a
copy that is a prefix of the changelog: a restart loads it and replays from its offset, with the
same result as a replay from offset 0 (issue 9: 100,000 sessions took ~28 s to replay).

Faust's own `rocksdict://` store writes the database first and the changelog after, so a kill
between the two leaves a value the changelog never got (and the next owner never sees); it also
takes each write's partition from the current event, which our background step writes lack.

The copy is exactly what a replay from offset 0 gives through its offset, nothing more: records
read back (recovery, standby) and this worker's own acknowledged writes are applied in offset
order with the replay's own rule (a write of an older owner epoch than the value held is
skipped), and an acknowledged write is taken only if it directly follows the copy's offset. A
gap means another writer (a zombie, or the next owner) wrote in between: the copy keeps its
offset, and the next load replays from there. A copy that cannot be trusted is forgotten, which
costs a full replay of that partition and nothing else: one ahead of the changelog's end (the
topic was recreated), one older than the changelog keeps deletions (`MAX_AGE_MS`), one whose
disk write failed.

Several workers on one machine each claim their own slot directory (an `flock`ed lock file), so
a restarted worker takes over the copy of the one that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

from faust.stores import memory
from faust.types import TP, EventT
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

log = logging.getLogger(__name__)

_META_KEY = b"\x00agentstream:offset"  # sorts before every key (the changelog's keys, JSON strings)
# Compaction keeps a deletion (tombstone) for the topic's delete.retention.ms, 24 h by default: a
# copy last written earlier than that could miss one and bring a deleted session back.
MAX_AGE_MS = 12 * 3600 * 1000

Stale = Callable[[bytes | None, bytes | None], bool]
Record = tuple[int, bytes, "bytes | None"]  # offset, key, value


class _CopyFailed(Exception):
    """A copy write failed during a catch-up (the partition is then replayed by Faust)."""


def _options() -> Options:
    """Small memtables and block cache: the values live in the table's memory already, and
    RocksDB's defaults (64 MB memtables, per partition) held a third of the worker's RSS with
    100,000 sessions, and a restart replayed all of it from the write-ahead log."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(4 << 20)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(4 << 20))
    options.set_block_based_table_factory(table)
    return options


class PartitionCopy:
    """One changelog partition's values as a replay through `offset` leaves them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), options=_options())
        self.offset: int | None = None
        self.updated_ms = 0
        raw = self._db.get(_META_KEY)
        if raw is not None:
            offset, updated = cast(bytes, raw).split()
            self.offset, self.updated_ms = int(offset), int(updated)

    def get(self, key: bytes) -> bytes | None:
        return cast("bytes | None", self._db.get(key))

    def write(self, records: Iterable[tuple[bytes, bytes | None]], offset: int) -> None:
        """Stores the records and the offset they complete, in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        updated = int(time.time() * 1000)
        batch.put(_META_KEY, f"{offset} {updated}".encode())
        self._db.write(batch)
        self.offset, self.updated_ms = offset, updated

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        once = ReadOptions()
        once.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the argument; read once, caching only costs RSS
        once.set_readahead_size(4 << 20)
        for key, value in self._db.items(read_opt=once):
            if key != _META_KEY:
                yield cast(bytes, key), cast(bytes, value)

    def forget(self) -> None:
        """Empties the copy: the partition's next load is a full replay."""
        self.offset = None
        batch = WriteBatch(raw_mode=True)
        for key in list(self._db.keys()):
            batch.delete(key)
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


def _forget_if_old(copy: PartitionCopy, partition: int) -> None:
    """A copy last written before the changelog's oldest kept deletion may miss one."""
    if copy.offset is not None and time.time() * 1000 - copy.updated_ms > MAX_AGE_MS:
        log.info("local copy of partition %d is older than the changelog keeps deletions: re-read", partition)
        copy.forget()


def claim_slot(root: Path) -> tuple[Path, IO[str]]:
    """The first `root/slot-N` no live process holds; the returned lock file must stay open."""
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1024):
        handle = open(root / f"slot-{n}.lock", "a")  # noqa: SIM115  # held open for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return root / f"slot-{n}", handle
    raise RuntimeError(f"no free state slot under {root}")


async def _read_while(reading: asyncio.Future[Any], budget_s: float, still_member: Callable[[], bool]) -> str | None:
    """Waits for `reading` while the budget lasts and the member needs no rejoin; otherwise
    cancels it (memory and copy agree wherever it stops) and says why."""
    deadline = time.monotonic() + budget_s
    while not reading.done():
        left = deadline - time.monotonic()
        if left > 0 and still_member():
            await asyncio.wait({reading}, timeout=min(0.25, left))
            continue
        why = "the group is rebalancing again" if left > 0 else "its time budget ran out"
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        return why
    reading.result()
    return None


class SnapshotStore(memory.Store[str, bytes]):
    """Faust's memory store, plus a local copy of the changelog per partition.

    Keys are session ids (`str`), values the encoded session bytes, as in the memory store. The
    table sets `partition_of`, `root`, `stale` (the replay's rule) and `read_ends`; it calls
    `copy_read` with the records it read back and `copy_sent` with its acknowledged writes.
    Faust's recovery asks `persisted_offset` where to start reading an assigned partition.
    """

    partition_of: Callable[[str], int]
    root: Path
    stale: Stale
    read_ends: Callable[[str], Awaitable[dict[int, int]]]
    read_partition: Callable[[str, int, int | None], AsyncGenerator[tuple[int, list[Record]], None]]
    catch_up_s: float = 3.0
    # Starts the member's heartbeats during the assignment callback (of the given generation);
    # returns a probe that is True while no other rebalance is pending, or None if it could not.
    keep_member_alive: Callable[[int], Callable[[], bool] | None] = staticmethod(lambda generation: None)
    # The catch-up's budget with heartbeats running (a million records take ~25-30 s here).
    catch_up_alive_s: float = 120.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._copies: dict[int, PartitionCopy] = {}
        self._current: set[int] = set()  # active partitions whose memory values are complete
        self._from_start: set[int] = set()  # partitions being replayed from their first record
        self._broken: set[int] = set()
        self._closed = False
        self._slot: Path | None = None
        self._lock: IO[str] | None = None

    # -- the copies ----------------------------------------------------------------------------

    def _topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def _copy(self, partition: int) -> PartitionCopy | None:
        """The partition's copy, None once stopped or after a failure (then replays are full)."""
        if self._closed or partition in self._broken:
            return None
        copy = self._copies.get(partition)
        if copy is None:
            try:
                if self._slot is None:
                    self._slot, self._lock = claim_slot(self.root)
                    log.info("local state copy in %s", self._slot)
                copy = self._copies[partition] = PartitionCopy(self._slot / self._topic() / f"p{partition}")
            except Exception:
                self._fail(partition)
                return None
        return copy

    def _fail(self, partition: int) -> None:
        log.exception("local state copy of partition %d failed: it replays the changelog from now on", partition)
        self._broken.add(partition)
        copy = self._copies.pop(partition, None)
        if copy is not None:
            with contextlib.suppress(Exception):
                copy.forget()

    async def prepare(self) -> None:
        """At worker start: forget copies ahead of their changelog's end (a recreated topic),
        which Faust's recovery would refuse (offset past the highwater) at every start."""
        ends = await self.read_ends(self._topic())
        for partition, end in ends.items():
            copy = self._copy(partition)
            if copy is not None and copy.offset is not None and copy.offset >= end:
                log.warning("local copy of %s[%d] at offset %d, past the changelog's end %d: forgotten",
                            self._topic(), partition, copy.offset, end)
                copy.forget()

    def copy_read(self, events: list[EventT[Any]]) -> None:
        """Records read back from the changelog, in offset order per partition."""
        by_partition: dict[int, list[EventT[Any]]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        for partition, read in by_partition.items():
            copy = self._copy(partition)
            if copy is None:
                continue
            try:
                self._apply_read(partition, copy, read)
            except Exception:
                self._fail(partition)

    def _apply_read(self, partition: int, copy: PartitionCopy, read: list[EventT[Any]]) -> None:
        if copy.offset is None and partition not in self._from_start:
            return  # this read does not start at the first record: it cannot complete the copy
        self._from_start.discard(partition)
        last = -1 if copy.offset is None else copy.offset
        unread = [e.message for e in read if e.message.offset > last]
        if unread:
            copy.write(self._applied(copy.get, [(cast(bytes, m.key), m.value) for m in unread]), unread[-1].offset)

    def _applied(
        self, current: Callable[[bytes], bytes | None], records: list[tuple[bytes, bytes | None]]
    ) -> list[tuple[bytes, bytes | None]]:
        """The records, in offset order, that a replay applies over the values `current` returns:
        a write of an older owner epoch than the value held (`current`'s, or an earlier
        record's) is skipped."""
        held: dict[bytes, bytes | None] = {}
        kept: list[tuple[bytes, bytes | None]] = []
        for key, value in records:
            if not self.stale(held[key] if key in held else current(key), value):
                held[key] = value
                kept.append((key, value))
        return kept

    def copy_sent(self, partition: int, offset: int, key: str | bytes, value: bytes | None) -> None:
        """One of our writes, acknowledged at `offset`: taken only if it directly follows the copy."""
        copy = self._copy(partition)
        if copy is None or copy.offset is None or offset != copy.offset + 1:
            return  # a gap (or no copy yet): the next load replays this record from the changelog
        try:
            raw = key if isinstance(key, bytes) else self._encode_key(key)
            copy.write([] if self.stale(copy.get(raw), value) else [(raw, value)], offset)
        except Exception:
            self._fail(partition)

    # -- catching up before Faust's recovery -----------------------------------------------------

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        """Runs before Faust's recovery: each newly active partition is brought towards the
        changelog's end here, by a plain consumer (Faust's recovery path handled ~4,000
        records/s where a plain consumer reads ~40,000), so recovery finds little or nothing left.

        aiokafka sends no heartbeat while this runs unless `keep_member_alive` starts them
        (`streams.kafka.heartbeats`): then it gets `catch_up_alive_s` and stops as soon as the
        group starts another rebalance (the other members wait for this one meanwhile), else
        half the group's session timeout (`catch_up_s`), for all partitions together; whatever
        is left then, Faust's recovery reads (memory and the copy agree through the copy's
        offset at every point it can stop)."""
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topic = self._topic()
        recovery = cast(Any, self.app.tables).recovery
        todo: list[tuple[int, PartitionCopy]] = []
        for tp in sorted(self.app.assignor.assigned_actives()):
            if tp.topic != topic or tp.partition in self._current or tp in recovery.active_offsets:
                continue  # memory is complete already, or Faust resumes a read it kept
            copy = self._copy(tp.partition)
            if copy is not None:
                todo.append((tp.partition, copy))
        if not todo:
            return
        started = time.monotonic()
        still_member = self.keep_member_alive(generation_id)
        budget = self.catch_up_s if still_member is None else self.catch_up_alive_s
        reading = asyncio.ensure_future(asyncio.gather(*(self._catch_up(p, c) for p, c in todo)))
        why = await _read_while(reading, budget, still_member or (lambda: True))
        if why is not None:
            log.info("catch-up stopped after %.1fs (%s): Faust's recovery reads the rest",
                     time.monotonic() - started, why)

    async def _catch_up(self, partition: int, copy: PartitionCopy) -> None:
        _forget_if_old(copy, partition)
        self._load(partition, copy)
        started, read = time.monotonic(), 0
        start = None if copy.offset is None else copy.offset + 1
        end: int | None = None
        data, sid_of = self.data, self._sid_of

        def in_memory(key: bytes) -> bytes | None:
            """Memory holds what the copy holds here (loaded above, then written after it), and a
            dict lookup is cheaper than the copy's: 11% of a million-record rebuild went to those."""
            return data.get(sid_of(key))

        try:
            async with contextlib.aclosing(self.read_partition(self._topic(), partition, start)) as batches:
                async for batch_end, records in batches:
                    end = batch_end
                    if records:
                        kept = self._applied(in_memory, [(key, value) for _, key, value in records])
                        self._write_caught_up(partition, copy, kept, records[-1][0])
                    read += len(records)
            if end is not None and copy.offset != end - 1:
                self._write_caught_up(partition, copy, [], end - 1)  # every offset below `end` was read
        except asyncio.CancelledError:
            raise
        except _CopyFailed:
            return  # logged; the partition is replayed by Faust
        except Exception:  # the broker, say: Faust's recovery reads on from the copy's offset
            log.warning("catch-up of partition %d stopped at offset %s", partition, copy.offset, exc_info=True)
        log.info("caught up partition %d from the changelog: %d records in %.2fs (offset %s)",
                 partition, read, time.monotonic() - started, copy.offset)

    def _write_caught_up(
        self, partition: int, copy: PartitionCopy, records: list[tuple[bytes, bytes | None]], offset: int
    ) -> None:
        """The copy first, then memory: they agree through the copy's offset whenever this can
        be interrupted. A copy that cannot be written is given up, with memory: full replay."""
        try:
            copy.write(records, offset)
        except Exception:
            self._fail(partition)
            self._current.discard(partition)
            self._drop({partition})
            raise _CopyFailed from None
        index = self._key_partition
        for key, value in records:
            sid = self._sid_of(key)
            if value is None:
                self.data.pop(sid, None)
                index.pop(sid, None)
            else:
                self.data[sid] = value
                index[sid] = partition

    # -- what Faust's recovery asks ------------------------------------------------------------

    def persisted_offset(self, tp: TP) -> int | None:
        """Where recovery starts reading `tp`: the copy's offset, once memory holds the copy."""
        partition = tp.partition
        self._from_start.discard(partition)
        standby = tp in self.app.assignor.assigned_standbys()
        copy = self._copy(partition)
        if copy is not None:
            _forget_if_old(copy, partition)
        if copy is None or copy.offset is None:
            recovery = cast(Any, self.app.tables).recovery
            if tp not in recovery.active_offsets and tp not in recovery.standby_offsets:
                # Faust reads it from its first record: memory and the copy start empty.
                self._from_start.add(partition)
                if not standby and partition not in self._current:
                    self._drop({partition})
            return None
        if not standby and partition not in self._current:
            try:
                self._load(partition, copy)
            except Exception:
                self._fail(partition)
                self._drop({partition})
                self._from_start.add(partition)
                return None
        return copy.offset

    def _load(self, partition: int, copy: PartitionCopy) -> None:
        # Values left from an earlier assignment may be stale: the copy and the tail replace them.
        self._drop({partition})
        loaded = 0
        for key, value in copy.items():
            sid = self._sid_of(key)
            self.data[sid] = value
            self._key_partition[sid] = partition
            loaded += 1
        self._current.add(partition)
        log.info("loaded %d sessions of partition %d from the local copy (offset %s)", loaded, partition, copy.offset)

    def _sid_of(self, key: bytes) -> str:
        """The changelog's keys are JSON strings; one without escapes is its bytes in quotes."""
        if key[:1] == b'"' and key[-1:] == b'"' and b"\\" not in key:
            return key[1:-1].decode()
        return cast(str, self._decode_key(key))

    def _drop(self, partitions: set[int]) -> None:
        """Memory values of these partitions: replayed ones are indexed by partition, our own
        writes are not (their partition is computed)."""
        index = self._key_partition
        doomed = [k for k in self.data if (index[k] if k in index else self.partition_of(k)) in partitions]
        for key in doomed:
            self.data.pop(key, None)
            index.pop(key, None)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        recovery = cast(Any, self.app.tables).recovery
        if self.app.consumer_generation_id != recovery._generation_id:
            return  # a superseded recovery (Faust calls this before its own generation check)
        await super().on_recovery_completed(active_tps, standby_tps)  # drops replayed non-active values
        actives = {tp.partition for tp in active_tps}
        if lost := self._current - actives:
            self._drop(lost)  # our own writes there too
        for tp in active_tps:
            copy = self._copy(tp.partition)
            if copy is not None and copy.offset is None and recovery.active_highwaters.get(tp) == -1:
                copy.forget()
                copy.write([], -1)  # an empty changelog partition: the empty copy is complete
        self._current = actives

    async def on_stop(self) -> None:
        self._closed = True
        for copy in self._copies.values():
            copy.close()
        self._copies.clear()
        if self._lock is not None:
            self._lock.close()
