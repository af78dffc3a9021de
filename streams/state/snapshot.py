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

Offsets: the copy's offset advances over records read back from the changelog (recovery,
standby) and over this worker's own acknowledged writes only while they follow each other with
no gap. A gap means another writer (a zombie, or the next owner) wrote in between: the copy then
keeps its older offset, and the next load replays from there.

Several workers on one machine each claim their own slot directory (an `flock`ed lock file), so
a restarted worker takes over the copy of the one that died.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

from faust.stores import memory
from faust.types import TP, EventT
from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger(__name__)

_OFFSET_KEY = b"\x00agentstream:offset"  # sorts before every key (the changelog's keys, JSON strings)


def _options() -> Options:
    """Small memtables: RocksDB's default (64 MB, per partition) held a third of the worker's
    RSS with 100,000 sessions, and a restart replayed all of it from the write-ahead log."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(4 << 20)
    options.set_max_write_buffer_number(2)
    return options


class PartitionCopy:
    """One changelog partition's acknowledged values and the offset they are complete through."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), options=_options())
        raw = self._db.get(_OFFSET_KEY)
        self.offset: int | None = int(raw) if raw is not None else None

    def write(self, records: Iterable[tuple[bytes, bytes | None]], offset: int | None) -> None:
        """Stores the records and, if given, the offset they complete, in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if offset is not None:
            batch.put(_OFFSET_KEY, str(offset).encode())
            self.offset = offset
        self._db.write(batch)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items():
            if key != _OFFSET_KEY:
                yield cast(bytes, key), cast(bytes, value)

    def clear(self) -> None:
        keys = list(self._db.keys())
        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        self._db.write(batch)
        self.offset = None

    def close(self) -> None:
        self._db.close()


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


class SnapshotStore(memory.Store[str, bytes]):
    """Faust's memory store, plus a local copy of the acknowledged changelog per partition.

    Keys are session ids (`str`), values the encoded session bytes, as in the memory store. The
    table calls `copy_read` for records it read back and `copy_sent` for its acknowledged writes;
    Faust's recovery asks `persisted_offset` where to start reading a partition it was assigned.
    """

    partition_of: Callable[[str], int]
    root: Path

    def __post_init__(self) -> None:
        super().__post_init__()
        self._copies: dict[int, PartitionCopy] = {}
        self._current: set[int] = set()  # partitions whose memory values are complete
        self._slot: Path | None = None
        self._lock: IO[str] | None = None

    # -- the copy ------------------------------------------------------------------------------

    def _copy(self, partition: int) -> PartitionCopy:
        copy = self._copies.get(partition)
        if copy is None:
            if self._slot is None:
                self._slot, self._lock = claim_slot(self.root)
                log.info("local state copy in %s", self._slot)
            topic = self.table.changelog_topic.get_topic_name()
            copy = self._copies[partition] = PartitionCopy(self._slot / topic / f"p{partition}")
        return copy

    def copy_read(self, events: list[EventT[Any]], applied: list[EventT[Any]]) -> None:
        """Records read back from the changelog: `applied` went into memory (the others were
        stale writes of an older owner); the copy is complete through the last one read."""
        last: dict[int, int] = {}
        for event in events:
            p, offset = event.message.partition, event.message.offset
            last[p] = max(offset, last.get(p, offset))
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in last}
        for event in applied:
            value = None if event.message.value is None else cast(bytes, event.value)
            by_partition[event.message.partition].append((cast(bytes, event.message.key), value))
        for p, records in by_partition.items():
            self._copy(p).write(records, last[p])

    def copy_sent(self, partition: int, offset: int, key: str | bytes, value: bytes | None) -> None:
        """One of our writes, acknowledged at `offset`: stored; the offset advances only if no
        other writer's record can lie between it and the copy's offset."""
        copy = self._copy(partition)
        contiguous = copy.offset is not None and offset == copy.offset + 1
        raw = key if isinstance(key, bytes) else self._encode_key(key)
        copy.write([(raw, value)], offset if contiguous else None)

    # -- what Faust's recovery asks ------------------------------------------------------------

    def persisted_offset(self, tp: TP) -> int | None:
        """Where recovery may start: the copy's offset, once memory holds what the copy holds."""
        try:
            copy = self._copy(tp.partition)
        except Exception:  # an unreadable copy costs a full replay, never the worker
            log.exception("local state copy of %s unreadable: replaying the changelog", tp)
            return None
        if tp.partition not in self._current:
            self._load(tp.partition, copy)
        return copy.offset

    def _load(self, partition: int, copy: PartitionCopy) -> None:
        # Values of this partition left from an earlier assignment may be stale: the copy (and the
        # replay after it) replaces them all.
        self._drop(partition)
        loaded = 0
        for key, value in copy.items():
            # The changelog's keys are JSON strings; one without escapes is its bytes in quotes.
            plain = key[:1] == b'"' and key[-1:] == b'"' and b"\\" not in key
            sid = key[1:-1].decode() if plain else cast(str, self._decode_key(key))
            self.data[sid] = value
            self._key_partition[sid] = partition
            loaded += 1
        self._current.add(partition)
        if loaded:
            log.info("loaded %d sessions of partition %d from the local copy (offset %s)", loaded, partition, copy.offset)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)  # drops non-active values
        actives = {tp.partition for tp in active_tps}
        recovery = cast(Any, self.app.tables).recovery
        for tp in active_tps:
            if recovery.active_highwaters.get(tp) != -1:
                continue
            copy = self._copy(tp.partition)  # an empty changelog partition: so is its copy
            if copy.offset != -1:
                if copy.offset is not None:
                    log.warning("changelog %s is empty but its local copy was at offset %s: cleared", tp, copy.offset)
                    self._drop(tp.partition)
                copy.clear()
                copy.write([], -1)
        self._current = actives

    def _drop(self, partition: int) -> None:
        for key in [k for k in self.data if self.partition_of(k) == partition]:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)

    async def on_stop(self) -> None:
        for copy in self._copies.values():
            copy.close()
        self._copies.clear()
        if self._lock is not None:
            self._lock.close()

