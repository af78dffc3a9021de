"""Session state transitions as pure functions over the JSON value kept in the `sessions` table.

Values are plain dicts so the changelog is readable by any consumer and by `agentstream session`.
"""

from __future__ import annotations

import copy
from typing import Any

SESSION_TTL_MS = 3_600_000
MAX_TURNS = 20
MAX_IDS = 1000
MAX_HISTORY = 20

Session = dict[str, Any]


def new_session(session_id: str, user_id: str, tenant_id: str) -> Session:
    return {
        "session_id": session_id,
        "user_id": user_id,
        "tenant_id": tenant_id,
        "conversation": [],
        "queue": [],
        "history": [],
        "holds": [],
        "handled": [],
        "responded": [],
        "last_activity_ms": 0,
        "expires_ms": 0,
    }


def touch(s: Session, now: int) -> None:
    s["last_activity_ms"] = now
    s["expires_ms"] = now + SESSION_TTL_MS


def _remember(ids: list[str], request_id: str) -> None:
    ids.append(request_id)
    del ids[:-MAX_IDS]


def enqueue(
    s: Session | None, routed: dict[str, Any], now: int, traceparent: str = ""
) -> tuple[Session, bool]:
    """Adds a routed request as a task; False when this request id was already taken in."""
    s = copy.deepcopy(s) if s else new_session(routed["session_id"], routed["user_id"], routed["tenant_id"])
    rid = routed["request_id"]
    if rid in s["handled"]:
        return s, False
    _remember(s["handled"], rid)
    # The trace context is kept with the task so a resumed task continues the same trace.
    s["queue"].append(
        {"request_id": rid, "routed": routed, "status": "queued", "steps": [], "traceparent": traceparent}
    )
    touch(s, now)
    return s, True


def current_task(s: Session | None) -> dict[str, Any] | None:
    return s["queue"][0] if s and s["queue"] else None


def record_step(s: Session, request_id: str, step: dict[str, Any], now: int) -> Session:
    """Appends or replaces (same index) a step of the task at the head of the queue."""
    s = copy.deepcopy(s)
    task = s["queue"][0]
    assert task["request_id"] == request_id, "steps only go to the task in progress"
    task["status"] = "running"
    steps = task["steps"]
    if step["index"] < len(steps):
        steps[step["index"]] = step
    else:
        steps.append(step)
    touch(s, now)
    return s


def finish_task(
    s: Session, request_id: str, status: str, answer: str, hold: dict[str, Any] | None, now: int
) -> Session:
    s = copy.deepcopy(s)
    task = s["queue"].pop(0)
    assert task["request_id"] == request_id
    task["status"] = status
    s["history"].append(task)
    del s["history"][:-MAX_HISTORY]
    s["conversation"].append({"role": "user", "content": task["routed"]["text"], "request_id": request_id})
    if answer:
        s["conversation"].append({"role": "assistant", "content": answer, "request_id": request_id})
    del s["conversation"][:-MAX_TURNS]
    if hold:
        s["holds"].append({"request_id": request_id, **hold})
    touch(s, now)
    return s


def mark_responded(s: Session | None, request_id: str, ids: tuple[str, str, str], now: int) -> tuple[Session, bool]:
    """Verifier side of idempotency: False when a response for this request id already went out."""
    s = copy.deepcopy(s) if s else new_session(*ids)
    if request_id in s["responded"]:
        return s, False
    _remember(s["responded"], request_id)
    touch(s, now)
    return s, True


def expired(s: Session, now: int) -> bool:
    return not s["queue"] and s["expires_ms"] < now
