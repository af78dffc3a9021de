"""The session store keeps encoded values: reads are fresh copies, scans decode only what they need,
and only a value that matches the declared session shape is read."""

import orjson
import pytest

from streams.state import sessions as state
from streams.state.model import Task
from streams.state.store import MemorySessions, digest_of, epoch_of, idle_before, with_queue


def _session(sid: str, queued: int, expires_ms: int, text: str = "hi") -> state.Session:
    s = state.new_session(sid, "u", "t")
    s.queue = [Task(request_id=f"r{i}", routed={"text": text}) for i in range(queued)]
    s.expires_ms = expires_ms
    return s


def test_a_read_is_a_fresh_copy_and_only_a_write_changes_the_store() -> None:
    store = MemorySessions()
    store["s"] = _session("s", 0, 10)
    copy = store["s"]
    copy.queue.append(Task(request_id="x", routed={}))
    assert store["s"].queue == [], "changing a read value does not change the store"
    store["s"] = copy
    assert store.get("s") == copy and store.get("missing") is None


def test_scans_find_queued_and_expired_sessions_from_the_bytes() -> None:
    store = MemorySessions()
    store["idle"], store["busy"], store["old"] = _session("idle", 0, 500), _session("busy", 2, 500), _session("old", 0, 50)
    assert [sid for sid, _ in with_queue(store)] == ["busy"]
    assert [sid for sid, s in idle_before(store, 100)] == ["old"]
    assert sorted(sid for sid, _ in idle_before(store, 1_000)) == ["busy", "idle", "old"]


def test_text_a_user_wrote_cannot_fool_the_scans() -> None:
    """A request whose text imitates the fields the scans read from the bytes: a queued task
    must still be found (else it is never resumed after a restart), and an idle session must
    not look fresh (else it is never expired)."""
    tricky = '"queue":[],"expires_ms":99999999999999,'
    store = MemorySessions()
    busy = _session("busy", 1, 500, text=tricky)
    idle = _session("idle", 0, 50)
    idle.conversation.append(state.Turn("user", tricky, "r0"))
    store["busy"], store["idle"] = busy, idle
    assert [sid for sid, _ in with_queue(store)] == ["busy"]
    assert [sid for sid, _ in idle_before(store, 100)] == ["idle"]


def test_a_value_written_before_this_encoding_is_still_read_correctly() -> None:
    """Older changelog values (other field order, spaces, `handled` as a list) decode and scan alike."""
    store = MemorySessions()
    for sid, queued in (("legacy", 1), ("legacy-idle", 0)):
        value = orjson.loads(state.dump(_session(sid, queued, 5)))
        value = {"session_id": sid, **value, "handled": ["old-request"], "responded": ["old-request"]}
        store.data[sid] = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    assert [sid for sid, _ in with_queue(store)] == ["legacy"]
    assert sorted(sid for sid, _ in idle_before(store, 10)) == ["legacy", "legacy-idle"]
    assert state.knows(store["legacy"], "old-request"), "ids taken in before the upgrade stay known"
    assert epoch_of(store.data["legacy"]) == 0


def test_a_value_that_is_not_a_session_is_refused_with_the_field() -> None:
    good = orjson.loads(state.dump(_session("s", 1, 5)))
    with pytest.raises(state.BadSessionValue, match=r"queue\[0\]\.status"):
        state.load(orjson.dumps({**good, "queue": [{**good["queue"][0], "status": "finished"}]}))
    with pytest.raises(state.BadSessionValue, match="not JSON"):
        state.load(b"\x00not json")


def test_the_epoch_is_read_off_the_first_bytes() -> None:
    s = _session("s", 0, 5)
    s.epoch = 12
    raw = state.dump(s)
    assert raw.startswith(b'{"expires_ms":5,"last_activity_ms":0,"epoch":12,')
    assert epoch_of(raw) == 12 == state.load(raw).epoch


def test_the_digest_depends_on_every_key_and_value_but_not_on_order() -> None:
    a = [("s1", b"{}"), ("s2", b'{"n":1}')]
    assert digest_of(a) == digest_of(list(reversed(a)))
    assert digest_of(a) != digest_of([("s1", b"{}"), ("s2", b'{"n":2}')])
    assert digest_of(a) != digest_of(a[:1])
