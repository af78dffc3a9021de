"""Token and cost ceilings as pure functions over one tenant's budget value and one request's
record (plain JSON; the tenant value stays small: counters and the reservations in flight).

Every request reserves an estimate before its first LLM call; each LLM call's actual usage is
charged as soon as the call is recorded (counted, and taken off the reservation), and the task's
end settles: whatever its recorded steps used beyond the charges (a charge lost in a crash) is
counted and the rest of the reservation released. Reservations are what make concurrent requests safe: all of a
tenant's budget events are processed in order on one partition, and each admission counts what
is already used plus what is reserved.

Every event changes two table values, first the request's record, then the tenant's, and a crash
can land between the two writes. The record lists the ids it applied (reservation, charges,
settled runs) with the budget-topic offset of the event that brought each; the tenant value
carries the offset of the last event applied to it. One tenant's events are handled in offset
order on one partition, and an event whose writes a crash cut short is handled again before any
later one, so the tenant value holds an id exactly when its offset has reached the id's. A
duplicate event (the same id at a later offset, sent again after a crash) changes nothing; a
redelivered one completes the tenant write it lost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Scope = Literal["tenant", "user"]
Period = Literal["hour", "day", "month"]
RESERVATION_TTL_MS = 3_600_000  # a reservation never settled (task lost) is released after this
RECORD_TTL_MS = 48 * 3_600_000  # per-request records (admission, settle ids) are kept this long

Budget = dict[str, Any]


@dataclass(frozen=True)
class Ceiling:
    scope: Scope
    window: Period
    max_tokens: int = 0  # 0: no token ceiling
    max_cost_usd: float = 0.0  # 0: no cost ceiling
    on_exceed: Literal["error", "degraded"] = "error"


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str = ""
    degraded: bool = False  # admitted on the cheaper estimate after a `degraded` ceiling


def new_budget() -> Budget:
    """A tenant's value: window counters, the reservations still open (small: in flight), and
    the offset of the last budget event applied to it (-1: none yet)."""
    return {"windows": {}, "open": {}, "offset": -1}


Record = dict[str, Any]  # one request's budget record: its admission, reservation, settle and charge ids


def _tenant_has(b: Budget, record: Record, event_id: str) -> bool:
    """Whether the tenant value holds an id the record holds: a record written before offsets
    were kept says nothing more, and is trusted as before."""
    at = record.get("at", {}).get(event_id)
    return at is None or int(b.get("offset", -1)) >= at


def _applied_at(b: Budget, record: Record, event_id: str, offset: int | None) -> None:
    """`event_id` is applied to both values by the event at `offset`."""
    if offset is not None:
        record.setdefault("at", {})[event_id] = offset
        _advance(b, offset)


def _advance(b: Budget, offset: int) -> None:
    """The tenant value now holds the event at `offset` (and every earlier one of its own)."""
    b["offset"] = max(int(b.get("offset", -1)), offset)


def period(window: Period, now_ms: int) -> tuple[str, datetime]:
    """The calendar period (UTC) holding `now_ms`, and when the next one starts."""
    t = datetime.fromtimestamp(now_ms / 1000, UTC)
    if window == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        nxt = datetime.fromtimestamp(start.timestamp() + 3600, UTC)
        return start.strftime("%Y-%m-%dT%H"), nxt
    if window == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = datetime.fromtimestamp(start.timestamp() + 86_400, UTC)
        return start.strftime("%Y-%m-%d"), nxt
    nxt = t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return t.strftime("%Y-%m"), nxt


def window_key(c: Ceiling, tenant_id: str, user_id: str, now_ms: int) -> str:
    who = tenant_id if c.scope == "tenant" else user_id
    return f"{c.scope}:{who}|{c.window}|{period(c.window, now_ms)[0]}"


def reserve(
    b: Budget | None,
    record: Record | None,
    ceilings: tuple[Ceiling, ...],
    tenant_id: str,
    user_id: str,
    request_id: str,
    tokens: int,
    cost_usd: float,
    now_ms: int,
    cheaper: tuple[int, float] | None = None,
    offset: int | None = None,
) -> tuple[Budget, Record, Admission]:
    """Admits the request and holds its estimate in every window it counts in, or names the
    first ceiling it would cross and when that ceiling resets. When that ceiling says
    `degraded` and a `cheaper` estimate (tokens, cost) is given, the cheaper one is tried. A
    request with a record already gets the decision it got then (a redelivery), and its hold is
    added to the tenant value if the crash came between the two writes (`offset`)."""
    b = copy.deepcopy(b) if b else new_budget()
    if record is not None and record.get("admission") is not None:
        admission = Admission(**record["admission"])
        held = record.get("reserved")
        if admission.admitted and held and not _tenant_has(b, record, "reserve"):
            _hold(b, request_id, record["keys"], held[0], held[1], int(record.get("at_ms", now_ms)))
            _advance(b, record["at"]["reserve"])
        return b, record, admission
    _release_stale(b, now_ms)
    record = {"admission": None, "keys": [], "settled": [], "at_ms": now_ms}
    crossed = _crossed(b, ceilings, tenant_id, user_id, tokens, cost_usd, now_ms)
    degraded = ""
    if crossed and crossed[0].on_exceed == "degraded" and cheaper is not None:
        degraded = crossed[1]
        tokens, cost_usd = cheaper
        crossed = _crossed(b, ceilings, tenant_id, user_id, tokens, cost_usd, now_ms)
    if crossed:
        admission = Admission(False, crossed[1])
        record["admission"] = admission.__dict__
        _applied_at(b, record, "reserve", offset)
        return b, record, admission
    keys = list(dict.fromkeys(window_key(c, tenant_id, user_id, now_ms) for c in ceilings))
    _hold(b, request_id, keys, tokens, cost_usd, now_ms)
    admission = Admission(True, degraded, degraded=bool(degraded))
    record.update(admission=admission.__dict__, keys=keys, reserved=[tokens, cost_usd])
    _applied_at(b, record, "reserve", offset)
    return b, record, admission


def _hold(b: Budget, request_id: str, keys: list[str], tokens: int, cost_usd: float, at_ms: int) -> None:
    if request_id in b["open"]:
        return  # held already (a value written before tenant values carried their offset)
    for key in keys:
        w = b["windows"].setdefault(key, {"tokens": 0, "cost": 0.0, "held_tokens": 0, "held_cost": 0.0})
        w["held_tokens"] += tokens
        w["held_cost"] += cost_usd
    b["open"][request_id] = {"keys": keys, "tokens": tokens, "cost": cost_usd, "at_ms": at_ms}


def _crossed(
    b: Budget, ceilings: tuple[Ceiling, ...], tenant_id: str, user_id: str, tokens: int, cost_usd: float, now_ms: int
) -> tuple[Ceiling, str] | None:
    """The first ceiling this estimate would cross, with the reason to give; None if it fits."""
    for c in ceilings:
        w = b["windows"].get(window_key(c, tenant_id, user_id, now_ms), {})
        used_tokens = w.get("tokens", 0) + w.get("held_tokens", 0)
        used_cost = w.get("cost", 0.0) + w.get("held_cost", 0.0)
        over = None
        if c.max_tokens and used_tokens + tokens > c.max_tokens:
            over = f"{c.max_tokens:,} tokens"
        elif c.max_cost_usd and used_cost + cost_usd > c.max_cost_usd:
            over = f"${c.max_cost_usd:,.2f}"
        if over:
            resets = period(c.window, now_ms)[1].isoformat(timespec="minutes").replace("+00:00", "Z")
            adjective = {"hour": "hourly", "day": "daily", "month": "monthly"}[c.window]
            return c, f"{c.scope} {adjective} budget of {over} reached; resets at {resets}"
    return None


def _copies(b: Budget | None, record: Record | None, now_ms: int) -> tuple[Budget, Record]:
    """Copies of the tenant value and the request's record to change (pure functions: the
    table's values are never mutated in place), or new ones."""
    b = copy.deepcopy(b) if b else new_budget()
    record = copy.deepcopy(record) if record else {"admission": None, "keys": [], "settled": [], "at_ms": now_ms}
    return b, record


def charge(
    b: Budget | None,
    record: Record | None,
    ceilings: tuple[Ceiling, ...],
    tenant_id: str,
    user_id: str,
    request_id: str,
    settle_id: str,
    charge_id: str,
    tokens: int,
    cost_usd: float,
    now_ms: int,
    offset: int | None = None,
) -> tuple[Budget, Record, bool]:
    """Counts one LLM call of a task run (`settle_id`) and takes it off the reservation's hold.
    False (nothing changes) for a charge already applied or one arriving after its run settled:
    the settlement counted everything the run's steps recorded."""
    b, record = _copies(b, record, now_ms)
    charged = record.setdefault("charged", {})
    if charge_id in charged:
        if _tenant_has(b, record, charge_id):
            return b, record, False  # a duplicate, or redelivered after both writes
        tokens, cost_usd = charged[charge_id][1], charged[charge_id][2]  # its tenant write was lost
    elif settle_id in record["settled"]:
        return b, record, False  # after its run settled: the settlement counted it
    else:
        charged[charge_id] = [settle_id, tokens, cost_usd]
        _applied_at(b, record, charge_id, offset)
    _advance(b, int(record.get("at", {}).get(charge_id, -1)))
    keys = _keys_for(record, ceilings, tenant_id, user_id, now_ms, settle_id)
    opened = b["open"].get(request_id)
    if opened is not None:
        part = {"keys": opened["keys"], "tokens": min(tokens, opened["tokens"]), "cost": min(cost_usd, opened["cost"])}
        _release(b, part)
        opened["tokens"] -= part["tokens"]
        opened["cost"] -= part["cost"]
    _count(b, keys, tokens, cost_usd)
    return b, record, True


def _keys_for(
    record: Record, ceilings: tuple[Ceiling, ...], tenant_id: str, user_id: str, now_ms: int, settle_id: str
) -> list[str]:
    """A request's first run counts in the windows of its reservation; a follow-up (after human
    review, hours later perhaps) in the windows of now."""
    if record["keys"] and not [s for s in record["settled"] if s != settle_id]:
        return list(record["keys"])
    return [window_key(c, tenant_id, user_id, now_ms) for c in ceilings]


def _count(b: Budget, keys: list[str], tokens: int, cost_usd: float) -> None:
    for key in dict.fromkeys(keys):
        w = b["windows"].setdefault(key, {"tokens": 0, "cost": 0.0, "held_tokens": 0, "held_cost": 0.0})
        w["tokens"] += tokens
        w["cost"] += cost_usd


def settle(
    b: Budget | None,
    record: Record | None,
    ceilings: tuple[Ceiling, ...],
    tenant_id: str,
    user_id: str,
    request_id: str,
    settle_id: str,
    tokens: int,
    cost_usd: float,
    now_ms: int,
    offset: int | None = None,
) -> tuple[Budget, Record, bool]:
    """Ends a task run: `tokens`/`cost_usd` are everything its recorded steps used; what its
    charges did not count yet is counted now, and the rest of the reservation is released.
    False for a settle id already applied (a redelivery) to both values."""
    b, record = _copies(b, record, now_ms)
    if settle_id in record["settled"]:
        if _tenant_has(b, record, settle_id):
            return b, record, False  # a duplicate, or redelivered after both writes
        _advance(b, record["at"][settle_id])  # its tenant write was lost
    else:
        record["settled"].append(settle_id)
        _applied_at(b, record, settle_id, offset)
    charges = [c for c in record.get("charged", {}).values() if c[0] == settle_id]
    keys = _keys_for(record, ceilings, tenant_id, user_id, now_ms, settle_id)
    opened = b["open"].pop(request_id, None)
    if opened is not None:
        _release(b, opened)
    _count(b, keys, max(0, tokens - sum(c[1] for c in charges)), max(0.0, cost_usd - sum(c[2] for c in charges)))
    _prune(b, now_ms)
    return b, record, True


def _release(b: Budget, r: dict[str, Any]) -> None:
    for key in r["keys"]:
        w = b["windows"].get(key)
        if w:
            w["held_tokens"] = max(0, w["held_tokens"] - r["tokens"])
            w["held_cost"] = max(0.0, w["held_cost"] - r["cost"])


def _release_stale(b: Budget, now_ms: int) -> None:
    """A reservation never settled (its task lost) stops holding budget after its TTL."""
    for rid, r in list(b["open"].items()):
        if r["at_ms"] < now_ms - RESERVATION_TTL_MS:
            _release(b, r)
            del b["open"][rid]


def _prune(b: Budget, now_ms: int) -> None:
    """Forgets windows of periods long over (older than the previous month)."""
    month = period("month", now_ms)[0]
    b["windows"] = {k: w for k, w in b["windows"].items() if k.rsplit("|", 1)[1][:7] >= _previous_month(month)}


def _previous_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year - (mon == 1)}-{(mon - 2) % 12 + 1:02d}"


def usage(b: Budget | None, key: str) -> dict[str, float]:
    """A window's counters (zeros when absent): for `agentstream status` and tests."""
    return dict((b or new_budget())["windows"].get(key, {"tokens": 0, "cost": 0.0, "held_tokens": 0, "held_cost": 0.0}))
