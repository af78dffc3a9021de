"""Changelog-backed state: `sessions` (conversation, task, holds, request ids seen).

The table holds each session as the JSON bytes its changelog record carries, not as Python
objects: 100,000 sessions take about a third of the memory, a rebuild stores what it reads
without decoding it, and a write encodes the value once (the same bytes go to the changelog).
Reading a session decodes a fresh value the caller may change at will.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any, cast

import faust

from streams.kafka.app import app
from streams.kafka.heartbeats import start_heartbeats_now
from streams.kafka.partitioning import partition_for
from streams.kafka.topic_reader import end_offsets, partition_records
from streams.state.model import Session
from streams.state.sessions import dump, load
from streams.state.snapshot import SnapshotStore
from streams.state.store import digest_of, is_stale


class SessionKeyedTable(faust.Table[str, bytes]):
    """A table keyed by session id that may be written outside stream iteration.

    LLM steps finish in background tasks, where faust has no current event to take the partition
    from (and its `use_partitioner` path needs producer metadata it may not have yet). The
    partition is the session key's murmur2 partition, so the changelog stays co-partitioned with
    every topic keyed by `session_id`.
    """

    def partition_for_key(self, key: Any) -> int:
        return partition_for(key, self.app.conf.topic_partitions)

    def _new_store(self) -> Any:
        """Memory, plus a local copy of the acknowledged changelog unless
        `AGENTSTREAM_LOCAL_STATE=false` (`streams.state.snapshot`)."""
        settings = self.app.agentstream_settings  # type: ignore[attr-defined]
        if not settings.local_state:
            return super()._new_store()
        store = SnapshotStore(
            "memory://", self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options,
        )
        store.partition_of = self.partition_for_key
        store.root = settings.data_dir / "state"
        store.stale = is_stale
        store.read_ends = functools.partial(end_offsets, settings.kafka_bootstrap_servers)
        store.read_partition = functools.partial(partition_records, settings.kafka_bootstrap_servers)
        store.catch_up_s = settings.session_timeout_s / 2  # if heartbeats cannot run meanwhile
        store.keep_member_alive = lambda generation: start_heartbeats_now(self.app.consumer, generation)
        return store

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Rebuilds (and standby replicas) skip writes of an older owner epoch (a zombie's)."""
        events = list(batch)
        super().apply_changelog_batch(self._fresh(events))
        if isinstance(self.data, SnapshotStore):
            self.data.copy_read(events)

    def _on_changelog_sent(self, fut: Any) -> None:
        super()._on_changelog_sent(fut)
        if isinstance(self.data, SnapshotStore):
            res, msg = fut.result(), fut.message
            self.data.copy_sent(res.topic_partition.partition, res.offset, msg.key, msg.value)

    def _fresh(self, batch: Iterable[Any]) -> Iterator[Any]:
        applied: dict[Any, Any] = {}
        for event in batch:
            key = self._to_key(event.key)
            current = applied[key] if key in applied else self.data.get(key)
            value = event.value
            # Read off the value's first bytes; a value not written by `dump` is decoded.
            if is_stale(current, value):
                continue
            applied[key] = value
            yield event


class SessionTable(SessionKeyedTable):
    """`sessions[sid]` / `sessions.get(sid)` decode, `sessions[sid] = value` encodes; the scans
    over every session (`streams.state.store.with_queue`, `idle_before`) look at the bytes
    first and decode only the few they are after."""

    def __getitem__(self, key: str) -> Session:  # type: ignore[override]  # bytes stored, Session served
        return load(super().__getitem__(key))

    def get(self, key: str, default: Session | None = None) -> Session | None:  # type: ignore[override]
        raw = self.data.get(key)
        return default if raw is None else load(raw)

    def __setitem__(self, key: str, value: Session) -> None:  # type: ignore[override]
        super().__setitem__(key, dump(value))

    def raw_items(self) -> list[tuple[str, bytes]]:
        return list(self.data.items())

    def raw(self, key: str) -> bytes | None:
        """The stored bytes, undecoded (a write reads only the owner epoch off them)."""
        return cast(bytes | None, self.data.get(key))

    def digest(self) -> str:
        """A fingerprint of the table's contents, logged after a rebuild so tests can compare it
        with the changelog (`digest_of` over the latest record of each key)."""
        return digest_of(self.raw_items())


# Faust picks the serializers from the types: keys as JSON strings (as the changelog has always
# carried them), values as the raw bytes the table already holds.
sessions = SessionTable(app, name="sessions", key_type=str, value_type=bytes, default=None)
app.tables.add(sessions)
