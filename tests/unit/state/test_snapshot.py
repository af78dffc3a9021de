"""The local copy of the sessions changelog: what reaches it, its offset, and what a load restores."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust

from streams.kafka.partitioning import partition_for
from streams.state.snapshot import PartitionCopy, SnapshotStore, claim_slot

PARTITIONS = 4


def _store(root: Path) -> SnapshotStore:
    app = faust.App("snapshot-test", broker="kafka://127.0.0.1:1")
    table = SimpleNamespace(changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-sessions-changelog"))
    store = SnapshotStore(
        "memory://", app, table, table_name="sessions",  # type: ignore[arg-type]
        key_type=str, key_serializer="json", value_serializer="raw", value_type=bytes,
    )
    store.partition_of = lambda key: partition_for(key, PARTITIONS)
    store.root = root
    return store


def _sid(partition: int, n: int) -> str:
    """The n-th session id that falls on `partition`."""
    found = [f"s{i}" for i in range(1000) if partition_for(f"s{i}", PARTITIONS) == partition]
    return found[n]


def _event(partition: int, offset: int, sid: str, value: bytes | None) -> Any:
    message = SimpleNamespace(partition=partition, offset=offset, key=json.dumps(sid).encode(), value=value)
    return SimpleNamespace(message=message, key=sid, value=value)


def _tp(partition: int) -> Any:
    return SimpleNamespace(topic="t-sessions-changelog", partition=partition)


def test_own_writes_advance_the_offset_only_while_no_other_writer_can_lie_between(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b, c = (_sid(1, n) for n in range(3))
    store.copy_read([_event(1, 0, a, b"a0")], [_event(1, 0, a, b"a0")])
    store.copy_sent(1, 1, json.dumps(b).encode(), b"b1")
    store.copy_sent(1, 2, b, b"b2")  # an unserialized key is encoded as the changelog's are
    assert store._copy(1).offset == 2
    store.copy_sent(1, 5, c, b"c5")  # offsets 3 and 4 were somebody else's
    assert store._copy(1).offset == 2
    assert dict(store._copy(1).items())[json.dumps(c).encode()] == b"c5"  # kept; replayed anyway


def test_a_partition_never_read_gets_no_offset_from_own_writes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.copy_sent(2, 7, _sid(2, 0), b"x")
    assert store._copy(2).offset is None  # what lies before offset 7 is unknown: a full replay


def test_reading_back_skips_stale_values_but_completes_the_offset(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b = _sid(0, 0), _sid(0, 1)
    read = [_event(0, 10, a, b"new"), _event(0, 11, b, b"zombie"), _event(0, 12, a, None)]
    store.copy_read(read, [read[0], read[2]])
    copy = store._copy(0)
    assert copy.offset == 12
    assert dict(copy.items()) == {}  # a written then deleted; b's stale write never applied


def test_a_restart_loads_the_copy_replacing_what_memory_held_for_that_partition(tmp_path: Path) -> None:
    first = _store(tmp_path)
    kept, gone = _sid(3, 0), _sid(3, 1)
    first.copy_read([_event(3, 0, kept, b"v0"), _event(3, 1, gone, b"g")], [_event(3, 0, kept, b"v0"), _event(3, 1, gone, b"g")])
    first.copy_sent(3, 2, gone, None)
    first.copy_sent(3, 3, kept, b"v3")
    first._copies[3].close()
    first._lock.close()  # type: ignore[union-attr]  # the worker died: its slot is free

    second = _store(tmp_path)
    other = _sid(1, 0)
    second.data[gone] = b"left over from an earlier assignment"
    second.data[other] = b"another partition's value"
    assert second.persisted_offset(_tp(3)) == 3
    assert second.data[kept] == b"v3"
    assert gone not in second.data
    assert second.data[other] == b"another partition's value"
    second.data[kept] = b"written since"
    assert second.persisted_offset(_tp(3)) == 3  # memory is current now: not loaded again
    assert second.data[kept] == b"written since"


def test_the_copy_survives_reopening(tmp_path: Path) -> None:
    copy = PartitionCopy(tmp_path / "p0")
    copy.write([(b'"a"', b"1"), (b'"b"', b"2")], 41)
    copy.write([(b'"b"', None)], None)
    copy.close()
    again = PartitionCopy(tmp_path / "p0")
    assert again.offset == 41
    assert dict(again.items()) == {b'"a"': b"1"}
    again.clear()
    assert again.offset is None and dict(again.items()) == {}


def test_each_live_process_claims_its_own_slot(tmp_path: Path) -> None:
    first, lock = claim_slot(tmp_path)
    second, lock2 = claim_slot(tmp_path)
    assert first != second
    lock.close()  # as when its process dies
    third, lock3 = claim_slot(tmp_path)
    assert third == first
    for handle in (lock2, lock3):
        handle.close()

