"""Demo tools over in-memory data, behind a ledger that honours idempotency keys.

The ledger plays the external system (payment provider, identity service): it runs a tool call at
most once per idempotency key and remembers the result, so a task resumed after a crash gets the
recorded result instead of charging a card twice. With a file path it survives the worker process,
which is what lets the crash tests count executions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.llm.base import ToolSpec

ToolFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

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


async def lookup_order(args: dict[str, Any]) -> dict[str, Any]:
    order_id = str(args.get("order_id", "")).lstrip("#")
    if order_id not in ORDERS:
        raise ToolError(f"order {order_id!r} not found")
    return {"order_id": order_id, **ORDERS[order_id]}


async def issue_refund(args: dict[str, Any]) -> dict[str, Any]:
    order_id = str(args.get("order_id", "")).lstrip("#")
    try:
        amount = round(float(args.get("amount", 0)), 2)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"refund amount {args.get('amount')!r} is not a number") from exc
    if amount <= 0:
        raise ToolError("refund amount must be positive")
    return {"order_id": order_id, "amount": amount, "refund_id": _ref("R-", order_id, amount)}


async def reset_password(args: dict[str, Any]) -> dict[str, Any]:
    user = str(args.get("user_id", "self"))
    return {"user_id": user, "reset_link_sent": True, "ticket": _ref("PW-", user)}


async def check_outage(args: dict[str, Any]) -> dict[str, Any]:
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
            (lambda action: lambda args: _account_action(action, args))(name),
        )
        for name in ("delete_account", "suspend_account", "transfer_account")
    },
}


@dataclass
class ToolLedger:
    """Executes each idempotency key at most once; optionally persisted as JSON lines."""

    path: Path | None = None

    def __post_init__(self) -> None:
        self._results: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._read_bytes = 0
        self._refresh()

    def _refresh(self) -> None:
        """Picks up executions recorded by other processes (a worker that took over a partition)."""
        if not self.path or not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._read_bytes)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read_bytes += len(complete)
        for line in complete.decode().splitlines():
            if line.strip():
                rec = json.loads(line)
                self._results[rec["key"]] = rec

    def executions(self) -> list[dict[str, Any]]:
        return list(self._results.values())

    async def run(
        self, key: str, name: str, args: dict[str, Any], fn: ToolFn, timeout_s: float
    ) -> tuple[dict[str, Any], bool]:
        """Returns (result, executed_now). A known key returns its recorded result."""
        if key not in self._results:
            self._refresh()
        if key in self._results:
            return self._results[key]["result"], False
        try:
            result = await asyncio.wait_for(fn(args), timeout_s)
        except ToolError as exc:
            result = {"error": str(exc)}
        except TimeoutError:
            result = {"error": f"tool {name} timed out after {timeout_s:.1f}s"}
        rec = {"key": key, "tool": name, "arguments": args, "result": result}
        with self._lock:
            if key in self._results:  # a concurrent duplicate won the race
                return self._results[key]["result"], False
            self._results[key] = rec
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, sort_keys=True) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        return result, True


def tools_for(names: tuple[str, ...]) -> list[ToolSpec]:
    return [DEMO_TOOLS[n][0] for n in names if n in DEMO_TOOLS]
