"""Demo tools over in-memory data, behind a ledger that honours idempotency keys.

The ledger plays the external system (payment provider, identity service): every local worker
shares it, it claims a key before the tool runs, and it keeps the first result, so a task resumed
after a crash (here or on another worker) gets the recorded result instead of charging a card
twice. Tools receive the key: see `ToolLedger` for what a tool author must do with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from streams.llm.base import ToolSpec
from streams.stages.execution.policy import refund_amount

_T = TypeVar("_T")
_BUSY_TIMEOUT_MS = 30_000  # how long a ledger transaction on a thread waits for another process

# A tool: (arguments, idempotency key) -> result. The key is the same on every retry of one call.
ToolFn = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]

ORDERS: dict[str, dict[str, Any]] = {
    "1234": {"status": "shipped", "total": 40.0, "carrier": "DHL", "eta": "2026-11-27"},
    "77": {"status": "delivered", "total": 250.0, "carrier": "UPS", "eta": "2026-11-20"},
    "1": {"status": "processing", "total": 12.5, "carrier": "", "eta": "2026-11-30"},
    "5555": {"status": "cancelled", "total": 99.0, "carrier": "", "eta": ""},
}
OUTAGES: dict[str, str] = {"dashboard": "degraded performance since 09:10 UTC"}


class ToolError(Exception):
    """A tool rejected its arguments; the message goes back to the model as the tool result."""


def _ref(prefix: str, *parts: object) -> str:
    return prefix + hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=4).hexdigest()


async def lookup_order(args: dict[str, Any], key: str = "") -> dict[str, Any]:
    order_id = str(args.get("order_id", "")).lstrip("#")
    if order_id not in ORDERS:
        raise ToolError(f"order {order_id!r} not found")
    return {"order_id": order_id, **ORDERS[order_id]}


async def issue_refund(args: dict[str, Any], key: str = "") -> dict[str, Any]:
    order_id = str(args.get("order_id", "")).lstrip("#")
    amount = refund_amount(args.get("amount"))
    if amount is None:  # NaN, inf, negative, zero, not a number: the policy holds these first
        raise ToolError(f"refund amount {str(args.get('amount'))[:40]!r} is not a positive number")
    amount = round(amount, 2)
    # The payment provider dedupes by key: the refund id is the key's, so a retry is the same refund.
    return {"order_id": order_id, "amount": amount, "refund_id": _ref("R-", key or order_id, amount)}


async def reset_password(args: dict[str, Any], key: str = "") -> dict[str, Any]:
    user = str(args.get("user_id", "self"))
    return {"user_id": user, "reset_link_sent": True, "ticket": _ref("PW-", user)}


async def check_outage(args: dict[str, Any], key: str = "") -> dict[str, Any]:
    service = str(args.get("service", "api")).lower()
    status = OUTAGES.get(service)
    return {"service": service, "outage": status is not None, "detail": status or "operational"}


async def _account_action(action: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": str(args.get("user_id", "self")), "action": action, "done": True}


def _obj(props: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": t} for k, t in props.items()},
        "required": required,
    }


DEMO_TOOLS: dict[str, tuple[ToolSpec, ToolFn]] = {
    "lookup_order": (
        ToolSpec("lookup_order", "Look up an order's status", _obj({"order_id": "string"}, ["order_id"])),
        lookup_order,
    ),
    "issue_refund": (
        ToolSpec(
            "issue_refund",
            "Refund an amount in USD on an order",
            _obj({"order_id": "string", "amount": "number"}, ["order_id", "amount"]),
        ),
        issue_refund,
    ),
    "reset_password": (
        ToolSpec("reset_password", "Send a password reset link", _obj({"user_id": "string"}, [])),
        reset_password,
    ),
    "check_outage": (
        ToolSpec("check_outage", "Check a service for a known outage", _obj({"service": "string"}, [])),
        check_outage,
    ),
    **{
        name: (
            ToolSpec(name, f"{name.replace('_', ' ').capitalize()} (high-stakes)", _obj({"user_id": "string"}, [])),
            (lambda action: lambda args, key="": _account_action(action, args))(name),
        )
        for name in ("delete_account", "suspend_account", "transfer_account")
    },
}


@dataclass
class ToolLedger:
    """Runs each idempotency key to completion once, across every process that shares `path`.

    A SQLite database (WAL, so workers on one machine share it safely) plays the tool's external
    system. A call is *claimed* in one transaction before the tool runs and *completed* with its
    result after; a key that is already complete returns its first result. A claim left behind by
    a killed or cancelled call is taken over at once when its claimant is gone (a dead process on
    this machine, or this process with the call no longer running), otherwise after
    `stale_after_s`; the tool is then called again
    **with the same key**: that is why every tool receives the key, and why a tool with a real
    side effect must pass it on to the system that performs it (as payment APIs accept an
    idempotency key) so the second call returns the first one's outcome.
    """

    path: Path | None = None
    stale_after_s: float = 30.0

    def __post_init__(self) -> None:
        self._memory: dict[str, dict[str, Any]] = {}  # no path: one process only (unit tests)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._running: set[str] = set()  # keys this process is executing right now
        self._me = f"{socket.gethostname()}:{os.getpid()}"

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            for attempt in range(100):
                # Switching to WAL takes an exclusive lock that the busy timeout does not wait
                # for: workers starting together retry it.
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    # NORMAL: a WAL commit is written before COMMIT returns, so it survives the
                    # process being killed; only an OS crash or power loss can roll back the last
                    # commits, and then the call runs again with the same key (the tool's backend
                    # dedupes it, as it must for a call that died mid-way). FULL's fsync per
                    # commit cost 0.70 ms per tool call against 0.25 ms (bench/bench_tool_ledger.py).
                    db.execute("PRAGMA synchronous=NORMAL")
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS tool_calls (key TEXT PRIMARY KEY, tool TEXT NOT NULL,"
                        " arguments TEXT NOT NULL, status TEXT NOT NULL, result TEXT,"
                        " attempts INTEGER NOT NULL, claimed_ms INTEGER NOT NULL, done_ms INTEGER,"
                        " owner TEXT NOT NULL DEFAULT '', request_id TEXT NOT NULL DEFAULT '')"
                    )
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(0.05)
            self._db = db
        return self._db

    def _claim(
        self, db: sqlite3.Connection, key: str, name: str, args: dict[str, Any], request_id: str
    ) -> tuple[str, dict[str, Any] | None]:
        """('done', result) | ('claimed', None) when ours to run | ('busy', None) when another runs it."""
        now = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT status, result, claimed_ms, owner FROM tool_calls WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO tool_calls VALUES (?, ?, ?, 'claimed', NULL, 1, ?, NULL, ?, ?)",
                    (key, name, json.dumps(args, sort_keys=True), now, self._me, request_id),
                )
                outcome: tuple[str, dict[str, Any] | None] = ("claimed", None)
            elif row[0] == "done":
                outcome = ("done", json.loads(row[1]))
            elif self._abandoned(key, row[3]) or now - row[2] > self.stale_after_s * 1000:
                db.execute(
                    "UPDATE tool_calls SET claimed_ms = ?, owner = ?, attempts = attempts + 1 "
                    "WHERE key = ?",
                    (now, self._me, key),
                )
                outcome = ("claimed", None)
            else:
                outcome = ("busy", None)
            db.execute("COMMIT")
            return outcome
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _abandoned(self, key: str, owner: str) -> bool:
        """True when the claimant cannot still be running the call."""
        if owner == self._me:
            return key not in self._running
        host, _, pid = owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _complete(self, db: sqlite3.Connection, key: str, result: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Stores the result unless another call completed first; returns the stored one."""
        db.execute("BEGIN IMMEDIATE")
        try:
            updated = db.execute(
                "UPDATE tool_calls SET status = 'done', result = ?, done_ms = ? "
                "WHERE key = ? AND status = 'claimed'",
                (json.dumps(result, sort_keys=True), int(time.time() * 1000), key),
            ).rowcount
            row = db.execute("SELECT result FROM tool_calls WHERE key = ?", (key,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return json.loads(row[0]), updated == 1

    async def _transact(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Runs one ledger transaction `fn(db, *args)`: on the event loop when the database is
        free at once, else on a thread that waits for it.

        On the loop because a thread pays for the GIL: every SQLite call releases it, and a
        pool thread then waits up to the interpreter's switch interval (5 ms) to take it back
        from the busy loop, several times per transaction and under the ledger's lock. Measured
        at 45.8 and 49.8 req/s with every transaction on a thread against 61.8 and 59.8 on the
        loop. A free WAL database commits in ~0.15 ms and never makes the
        loop wait for another process: the loop's attempt does not wait for a lock (SQLite's
        busy timeout 0, this process's lock not blocking) and leaves a busy database to the
        thread."""
        done, value = self._try_now(fn, args)
        if done:
            return cast(_T, value)
        return await asyncio.to_thread(self._locked, fn, args)

    def _try_now(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> tuple[bool, Any]:
        if self._db is None or not self._lock.acquire(blocking=False):
            return False, None  # opening (WAL switch retries) and waiting belong to the thread
        try:
            self._db.execute("PRAGMA busy_timeout = 0")
            try:
                return True, fn(self._db, *args)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    return False, None  # rolled back by `fn`: the thread runs it again whole
                raise
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        finally:
            self._lock.release()

    def _locked(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        with self._lock:
            return fn(self._conn(), *args)

    async def open(self) -> None:
        """Opens (creating if need be) the database now, on a thread: switching it to WAL may
        wait for other processes. Later transactions can then run on the loop."""
        if self.path is not None:
            await asyncio.to_thread(self._locked, lambda db: None, ())

    def executions(self) -> list[dict[str, Any]]:
        """Completed calls: key, tool, arguments, result, attempts (claims it took)."""
        if self.path is None:
            return list(self._memory.values())
        if not self.path.exists():
            return []
        with self._lock:
            rows = self._conn().execute(
                "SELECT key, tool, arguments, result, attempts, request_id FROM tool_calls"
                " WHERE status = 'done'"
            ).fetchall()
        return [
            {
                "key": k,
                "tool": t,
                "arguments": json.loads(a),
                "result": json.loads(r),
                "attempts": n,
                "request_id": rid,
            }
            for k, t, a, r, n, rid in rows
        ]

    async def run(
        self,
        key: str,
        name: str,
        args: dict[str, Any],
        fn: ToolFn,
        timeout_s: float,
        request_id: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """Returns (result, executed_now). A completed key returns its recorded result."""
        if self.path is None:
            return await self._run_in_memory(key, name, args, fn, timeout_s)
        while True:
            state, result = await self._transact(self._claim, key, name, args, request_id)
            if state == "done":
                assert result is not None
                return result, False
            if state == "claimed":
                break
            await asyncio.sleep(0.2)  # another worker is running this very call: await its result
        self._running.add(key)
        try:
            result = await _call(fn, args, key, name, timeout_s)
            return await self._transact(self._complete, key, result)
        finally:
            self._running.discard(key)

    async def _run_in_memory(
        self, key: str, name: str, args: dict[str, Any], fn: ToolFn, timeout_s: float
    ) -> tuple[dict[str, Any], bool]:
        if key in self._memory:
            return self._memory[key]["result"], False
        result = await _call(fn, args, key, name, timeout_s)
        if key in self._memory:
            return self._memory[key]["result"], False
        self._memory[key] = {
            "key": key, "tool": name, "arguments": args, "result": result, "attempts": 1, "request_id": ""
        }
        return result, True


async def _call(fn: ToolFn, args: dict[str, Any], key: str, name: str, timeout_s: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(fn(args, key), timeout_s)
    except ToolError as exc:
        return {"error": str(exc)}
    except TimeoutError:
        return {"error": f"tool {name} timed out after {timeout_s:.1f}s"}


def tools_for(names: tuple[str, ...]) -> list[ToolSpec]:
    return [DEMO_TOOLS[n][0] for n in names if n in DEMO_TOOLS]
