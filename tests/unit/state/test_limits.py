"""Router identity and size limits; bounded session values (pure functions, no Kafka)."""

from __future__ import annotations

from streams.config.pipeline import load_config
from streams.events.records import ContextMessage, Request, Response
from streams.stages.routing.logic import identity_problem, route
from streams.state import sessions as state
from streams.state.store import is_stale


def _req(**kw) -> Request:
    base = {"request_id": "r1", "session_id": "s1", "user_id": "u1", "text": "hi there", "created_ms": 1}
    return Request(**{**base, **kw})


def test_identity_problems_name_the_field() -> None:
    assert identity_problem(_req(), b"s1") is None
    assert "no session_id" in (identity_problem(_req(session_id=" "), b" ") or "")
    assert "differs" in (identity_problem(_req(), b"s2") or "")
    assert "differs" in (identity_problem(_req(), None) or "")
    assert "no request_id" in (identity_problem(_req(request_id=""), b"s1") or "")


def test_context_and_size_limits_answer_error() -> None:
    cfg = load_config()
    many = route(_req(context=[ContextMessage(role="user", content="x")] * 51), cfg)
    assert isinstance(many, Response) and many.status == "error" and "context messages" in many.reason
    long = route(_req(context=[ContextMessage(role="user", content="x" * 40_001)]), cfg)
    assert isinstance(long, Response) and "context too long" in long.reason
    big = route(_req(), cfg, raw_bytes=300_000)
    assert isinstance(big, Response) and "too large" in big.reason
    assert not isinstance(route(_req(), cfg, raw_bytes=1000), Response)


def _routed(rid: str, text: str = "hello") -> dict:
    return {"request_id": rid, "session_id": "s", "user_id": "u", "tenant_id": "t", "text": text}


def test_seen_ids_expire_after_the_window() -> None:
    s, fresh = state.enqueue(None, _routed("a"), now=1_000, window_ms=10_000)
    assert fresh
    s = state.finish_task(s, "a", "ok", "answer", None, 2_000)
    _, again = state.enqueue(s, _routed("a"), now=5_000, window_ms=10_000)
    assert not again, "a duplicate inside the window is dropped"
    s, _ = state.enqueue(s, _routed("b"), now=20_000, window_ms=10_000)
    assert "a" not in s.handled, "ids older than the window are forgotten"


def test_session_value_is_capped_oldest_history_first() -> None:
    s = None
    for i in range(30):
        s, _ = state.enqueue(s, _routed(f"r{i}", "x" * 20_000), now=i)
        s = state.finish_task(s, f"r{i}", "ok", "y" * 20_000, None, i)
    assert s is not None
    size = len(state.dump(s))
    assert size <= state.MAX_SESSION_BYTES
    assert s.trimmed is not None and s.trimmed.entries > 0 and s.trimmed.bytes <= state.MAX_SESSION_BYTES
    assert s.finished[-1].request_id == "r29", "the newest finished task is kept"
    assert len(s.finished) == state.MAX_HISTORY, "finished tasks are lines: the cap keeps them all"


def _v(n: int, epoch: int = 0) -> state.Session:
    """A session value told apart by its user id."""
    s = state.new_session("s", f"u{n}", "t")
    s.epoch = epoch
    return s


def test_owner_epochs_fence_a_zombie_on_rebuild() -> None:
    old_owner, new_owner = state.OwnerEpochs(), state.OwnerEpochs()
    old_owner.reassigned(4)
    v1 = old_owner.stamp("s", _v(1), None)
    v2 = old_owner.stamp("s", _v(2), v1.epoch)
    assert v1.epoch == v2.epoch == 4, "one epoch per ownership: the generation it was given in"
    new_owner.reassigned(5)
    taken = new_owner.stamp("s", _v(3), v2.epoch)  # the new owner's first write after takeover
    assert taken.epoch == 5
    zombie = old_owner.stamp("s", _v(99), v2.epoch)  # written by the old owner after it lost it
    assert is_stale(state.dump(taken), state.dump(zombie)) and not is_stale(state.dump(v2), state.dump(taken))
    assert not is_stale(state.dump(taken), None), "deletes always apply"
    new_owner.reassigned(6)
    assert new_owner.stamp("s", _v(4), taken.epoch).epoch == 6


def test_owner_epochs_do_not_tie_when_an_owner_in_between_never_wrote() -> None:
    """A -> B -> C: B never wrote, so B and C both start from A's value. A counter bumped on
    write would give both the same epoch and let zombie B overwrite C on a rebuild."""
    a, b, c = state.OwnerEpochs(), state.OwnerEpochs(), state.OwnerEpochs()
    a.reassigned(7)
    by_a = a.stamp("s", _v(1), None)
    b.reassigned(8)
    c.reassigned(9)
    by_c = c.stamp("s", _v(2), by_a.epoch)
    late_b = b.stamp("s", _v(3), by_a.epoch)  # B wakes up and writes from its stale copy
    assert is_stale(state.dump(by_c), state.dump(late_b))


def test_owner_epochs_keep_rising_after_the_group_is_recreated() -> None:
    """A recreated group starts its generations again; epochs already stored must not win."""
    owner = state.OwnerEpochs()
    owner.reassigned(1)
    stored = _v(1, epoch=40)
    fresh = owner.stamp("s", _v(2), stored.epoch)
    assert fresh.epoch == 41 and not is_stale(state.dump(stored), state.dump(fresh))


def test_queued_tasks_cannot_outgrow_the_session_cap() -> None:
    """Twenty queued requests of 200 kB each would make a 4 MB value: the ones that do not fit
    are refused (the caller answers `error`), and the value stays under the changelog limit."""
    s, refused = None, []
    for i in range(20):
        try:
            s, _ = state.enqueue(s, _routed(f"r{i}", "x" * 200_000), now=i)
        except state.SessionFull as full:
            refused.append((f"r{i}", str(full)))
    assert s is not None and len(s.queue) == 1, "one 200 kB task fits, a second does not"
    assert len(refused) == 19 and "no room" in refused[0][1]
    assert len(state.dump(s)) <= state.MAX_QUEUED_BYTES


def test_a_rejected_id_is_remembered_as_handled() -> None:
    s, _ = state.enqueue(None, _routed("a"), now=1)
    s = state.mark_handled(s, "rejected", now=2)
    assert state.knows(s, "rejected")
    _, fresh = state.enqueue(s, _routed("rejected"), now=3)
    assert not fresh, "a redelivered rejected request is not run after its error answer"
