"""The session store keeps encoded values: reads are fresh copies, scans decode only what they need."""

from streams.state import sessions as state
from streams.state.store import MemorySessions, digest_of, idle_before, with_queue


def _session(sid: str, queued: int, expires_ms: int) -> state.Session:
    s = state.new_session(sid, "u", "t")
    s["queue"] = [{"request_id": f"r{i}"} for i in range(queued)]  # type: ignore[typeddict-item]
    s["expires_ms"] = expires_ms
    return s


def test_a_read_is_a_fresh_copy_and_only_a_write_changes_the_store() -> None:
    store = MemorySessions()
    store["s"] = _session("s", 0, 10)
    copy = store["s"]
    copy["queue"].append({"request_id": "x"})  # type: ignore[typeddict-item]
    assert store["s"]["queue"] == [], "changing a read value does not change the store"
    store["s"] = copy
    assert store.get("s") == copy and store.get("missing") is None


def test_scans_find_queued_and_expired_sessions_from_the_bytes() -> None:
    store = MemorySessions()
    store["idle"], store["busy"], store["old"] = _session("idle", 0, 500), _session("busy", 2, 500), _session("old", 0, 50)
    assert [sid for sid, _ in with_queue(store)] == ["busy"]
    assert [sid for sid, s in idle_before(store, 100)] == ["old"]
    assert sorted(sid for sid, _ in idle_before(store, 1_000)) == ["busy", "idle", "old"]


def test_a_value_written_by_another_encoder_is_still_read_correctly() -> None:
    """Changelog values written before this encoding (json.dumps, with spaces) decode and scan alike."""
    store = MemorySessions()
    store.data["legacy"] = state.json.dumps(_session("legacy", 1, 5)).encode()
    store.data["legacy-idle"] = state.json.dumps(_session("legacy-idle", 0, 5)).encode()
    assert [sid for sid, _ in with_queue(store)] == ["legacy"]
    assert sorted(sid for sid, _ in idle_before(store, 10)) == ["legacy", "legacy-idle"]


def test_the_digest_depends_on_every_key_and_value_but_not_on_order() -> None:
    a = [("s1", b"{}"), ("s2", b'{"n":1}')]
    assert digest_of(a) == digest_of(list(reversed(a)))
    assert digest_of(a) != digest_of([("s1", b"{}"), ("s2", b'{"n":2}')])
    assert digest_of(a) != digest_of(a[:1])
