"""The local copy of the sessions changelog: it is what a replay from offset 0 gives through its
offset, whatever order reads and acknowledged writes arrive in, and a load restores exactly it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from streams.kafka.partitioning import partition_for
from streams.state import snapshot
from streams.state.sessions import dump, new_session
from streams.state.snapshot import PartitionCopy, SnapshotStore, claim_slot
from streams.state.store import is_stale

PARTITIONS = 4
TOPIC = "t-sessions-changelog"


def _store(root: Path, ends: dict[int, int] | None = None) -> SnapshotStore:
    app = faust.App(f"snapshot-test-{root.name}", broker="kafka://127.0.0.1:1")
    table = SimpleNamespace(changelog_topic=SimpleNamespace(get_topic_name=lambda: TOPIC))
    store = SnapshotStore(
        "memory://", app, table, table_name="sessions",  # type: ignore[arg-type]
        key_type=str, key_serializer="json", value_serializer="raw", value_type=bytes,
    )
    store.partition_of = lambda key: partition_for(key, PARTITIONS)
    store.root = root
    store.stale = is_stale

    async def read_ends(topic: str) -> dict[int, int]:
        return dict(ends or {})

    store.read_ends = read_ends
    return store


def _sid(partition: int, n: int) -> str:
    """The n-th session id that falls on `partition`."""
    return [f"s{i}" for i in range(1000) if partition_for(f"s{i}", PARTITIONS) == partition][n]


def _value(sid: str, epoch: int, text: str = "") -> bytes:
    s = new_session(sid, "u", "t")
    s.epoch = epoch
    s.user_id = text or "u"
    return dump(s)


def _key(sid: str) -> bytes:
    return json.dumps(sid).encode()


def _event(partition: int, offset: int, sid: str, value: bytes | None) -> Any:
    message = SimpleNamespace(partition=partition, offset=offset, key=_key(sid), value=value)
    return SimpleNamespace(message=message, key=sid, value=value)


def _tp(partition: int) -> Any:
    return faust.types.TP(TOPIC, partition)


def _start_from_zero(store: SnapshotStore, partition: int) -> None:
    """As recovery does for a partition with no copy: ask, then read from the first record."""
    assert store.persisted_offset(_tp(partition)) is None


def test_a_full_replay_is_copied_and_own_writes_extend_it_only_without_a_gap(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b, c = (_sid(1, n) for n in range(3))
    _start_from_zero(store, 1)
    store.copy_read([_event(1, 0, a, _value(a, 1))])
    store.copy_sent(1, 1, _key(b), _value(b, 1))
    store.copy_sent(1, 2, b, _value(b, 1, "again"))  # an unserialized key is encoded as the changelog's
    copy = store._copies[1]
    assert copy.offset == 2
    store.copy_sent(1, 5, c, _value(c, 1))  # offsets 3 and 4 were somebody else's
    assert copy.offset == 2
    assert copy.get(_key(c)) is None  # left to the next load's replay of the tail
    assert copy.get(_key(b)) == _value(b, 1, "again")


def test_a_read_that_does_not_start_at_the_first_record_never_makes_a_copy(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = _sid(2, 0)
    store.copy_read([_event(2, 40, a, _value(a, 1))])  # e.g. Faust resumed from an offset it kept
    store.copy_sent(2, 41, a, _value(a, 1))
    assert store._copies[2].offset is None


def test_older_epoch_writes_are_skipped_as_a_full_replay_skips_them(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b = _sid(0, 0), _sid(0, 1)
    _start_from_zero(store, 0)
    store.copy_read([
        _event(0, 0, a, _value(a, 3)),
        _event(0, 1, a, _value(a, 2, "zombie")),  # an older owner's late write
        _event(0, 2, b, _value(b, 3)),
        _event(0, 3, b, None),
    ])
    copy = store._copies[0]
    assert copy.offset == 3
    assert dict(copy.items()) == {_key(a): _value(a, 3)}
    # The zombie was this worker: its own late write is acknowledged right after, and skipped too.
    store.copy_sent(0, 4, a, _value(a, 2, "mine, late"))
    assert copy.offset == 4 and copy.get(_key(a)) == _value(a, 3)
    # Records at or below the copy's offset (read again after a seek) change nothing.
    store.copy_read([_event(0, 2, b, _value(b, 3)), _event(0, 5, b, _value(b, 4))])
    assert copy.offset == 5 and copy.get(_key(b)) == _value(b, 4)


def test_a_restart_loads_the_copy_and_drops_what_memory_held_for_that_partition(tmp_path: Path) -> None:
    first = _store(tmp_path)
    kept, gone = _sid(3, 0), _sid(3, 1)
    _start_from_zero(first, 3)
    first.copy_read([_event(3, 0, kept, _value(kept, 1)), _event(3, 1, gone, _value(gone, 1))])
    first.copy_sent(3, 2, gone, None)
    first.copy_sent(3, 3, kept, _value(kept, 1, "v3"))
    asyncio.run(first.on_stop())  # the worker died: its slot is free

    second = _store(tmp_path)
    other = _sid(1, 0)
    second.data[gone] = b"left over from an earlier assignment"
    second.data[other] = b"another partition's value"
    assert second.persisted_offset(_tp(3)) == 3
    assert second.data[kept] == _value(kept, 1, "v3")
    assert gone not in second.data
    assert second.data[other] == b"another partition's value"
    second.data[kept] = b"written since"
    assert second.persisted_offset(_tp(3)) == 3  # memory is current now: not loaded again
    assert second.data[kept] == b"written since"


def test_a_copy_past_the_changelogs_end_is_forgotten_at_start(tmp_path: Path) -> None:
    first = _store(tmp_path)
    a = _sid(0, 0)
    _start_from_zero(first, 0)
    first.copy_read([_event(0, n, a, _value(a, 1)) for n in range(10)])
    asyncio.run(first.on_stop())
    second = _store(tmp_path, ends={0: 3})  # the topic was deleted and created again
    asyncio.run(second.prepare())
    assert second.persisted_offset(_tp(0)) is None
    assert a not in second.data


def test_a_copy_older_than_the_changelog_keeps_deletions_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    a = _sid(0, 0)
    _start_from_zero(store, 0)
    store.copy_read([_event(0, 0, a, _value(a, 1))])
    later = time.time() + snapshot.MAX_AGE_MS / 1000 + 60
    monkeypatch.setattr(snapshot.time, "time", lambda: later)
    store._current.clear()
    assert store.persisted_offset(_tp(0)) is None


def test_a_failing_copy_turns_into_full_replays_not_a_crash(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = _sid(0, 0)
    _start_from_zero(store, 0)

    def broken(*_: Any) -> None:
        raise OSError("disk full")

    store._copies[0].write = broken  # type: ignore[method-assign]
    store.copy_read([_event(0, 0, a, _value(a, 1))])
    store.copy_sent(0, 1, a, _value(a, 1))
    assert store.persisted_offset(_tp(0)) is None


def test_the_copy_survives_reopening(tmp_path: Path) -> None:
    copy = PartitionCopy(tmp_path / "p0")
    copy.write([(b'"a"', b"1"), (b'"b"', b"2")], 41)
    copy.write([(b'"b"', None)], 42)
    copy.close()
    again = PartitionCopy(tmp_path / "p0")
    assert again.offset == 42
    assert dict(again.items()) == {b'"a"': b"1"}
    again.forget()
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


def test_catching_up_reads_the_tail_into_memory_and_the_copy_with_the_replays_rule(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b, c = (_sid(2, n) for n in range(3))
    _start_from_zero(store, 2)
    store.copy_read([_event(2, n, a, _value(a, 5)) for n in range(4)])  # copy through offset 3
    asked: list[tuple[int, int | None]] = []

    async def read_partition(topic: str, partition: int, start: int | None) -> Any:
        asked.append((partition, start))
        yield 8, []
        yield 8, [(4, _key(b), _value(b, 5)), (5, _key(a), _value(a, 4, "zombie"))]
        yield 8, [(6, _key(c), _value(c, 5))]  # offset 7 was compacted away

    store.read_partition = read_partition
    asyncio.run(store._catch_up(2, store._copies[2]))
    assert asked == [(2, 4)], "only the tail after the copy is read"
    copy = store._copies[2]
    assert copy.offset == 7, "complete through the end: the missing offset was compacted away"
    assert dict(copy.items()) == {_key(a): _value(a, 5), _key(b): _value(b, 5), _key(c): _value(c, 5)}
    assert {k: store.data[k] for k in (a, b, c)} == {a: _value(a, 5), b: _value(b, 5), c: _value(c, 5)}
    assert store.persisted_offset(_tp(2)) == 7, "recovery starts at the end: nothing left to read"


def test_catching_up_without_a_copy_reads_from_the_first_record(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = _sid(0, 0)
    store.data[a] = b"left over"

    async def read_partition(topic: str, partition: int, start: int | None) -> Any:
        assert start is None
        yield 3, []
        yield 3, [(1, _key(a), _value(a, 1)), (2, _key(a), None)]

    store.read_partition = read_partition
    copy = store._copy(0)
    assert copy is not None
    asyncio.run(store._catch_up(0, copy))
    assert copy.offset == 2 and dict(copy.items()) == {}
    assert a not in store.data


def test_a_catch_up_out_of_time_leaves_memory_and_copy_agreeing_for_faust_to_finish(tmp_path: Path) -> None:
    from faust.assignor.client_assignment import ClientAssignment

    store = _store(tmp_path)
    store.catch_up_s = 0.3
    store.app.assignor._assignment = ClientAssignment(actives={TOPIC: [1]}, standbys={})  # type: ignore[attr-defined]
    a, b = _sid(1, 0), _sid(1, 1)

    async def read_partition(topic: str, partition: int, start: int | None) -> Any:
        yield 100, []
        yield 100, [(0, _key(a), _value(a, 1))]
        await asyncio.sleep(5)  # a slow broker: the budget runs out here
        yield 100, [(1, _key(b), _value(b, 1))]

    store.read_partition = read_partition
    asyncio.run(store.on_rebalance(set(), set(), set()))
    assert store._copies[1].offset == 0 and store.data.get(a) == _value(a, 1) and b not in store.data
    assert store.persisted_offset(_tp(1)) == 0, "Faust's recovery reads on from there"


def test_a_superseded_recovery_does_not_drop_what_a_catch_up_loaded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = _sid(3, 0)
    store.data[a] = _value(a, 1)
    store._current.add(3)
    store.app.consumer_generation_id = 7  # type: ignore[attr-defined]
    store.app.tables.recovery._generation_id = 6  # type: ignore[attr-defined]
    asyncio.run(store.on_recovery_completed(set(), set()))
    assert a in store.data and store._current == {3}


async def test_the_catch_up_stops_when_the_group_rebalances_again_or_its_budget_runs_out() -> None:
    from streams.state.snapshot import _read_while

    async def read(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    finished = asyncio.ensure_future(read(0.05))
    assert await _read_while(finished, 5.0, lambda: True) is None and finished.result() == "done"

    member = [True]
    slow = asyncio.ensure_future(read(30))
    asyncio.get_running_loop().call_later(0.3, member.__setitem__, 0, False)
    started = time.monotonic()
    assert await _read_while(slow, 30.0, lambda: member[0]) == "the group is rebalancing again"
    assert slow.cancelled() and time.monotonic() - started < 2

    over = asyncio.ensure_future(read(30))
    assert await _read_while(over, 0.3, lambda: True) == "its time budget ran out"
    assert over.cancelled()
