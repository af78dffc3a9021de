"""What a user asks for, as tool calls: order ids, amounts, refunds, outages, account actions."""

from __future__ import annotations

import re
from typing import Any

from streams.llm.base import (
    ToolSpec,
)

_ID = r"([A-Za-z0-9][A-Za-z0-9_-]*)"
_ORDER_RE = re.compile(
    r"\b(?:order|pedido|commande|bestellung)\s*(?:(?:number|no\.?|id|nr\.?|n°)\s*)?[#:]?\s*"
    r"([A-Za-z]*-?\d[A-Za-z0-9_-]*)",
    re.IGNORECASE,
)
_HASH_ID_RE = re.compile(r"#\s*([A-Za-z]*-?\d[A-Za-z0-9_-]*)")
_AMOUNT_RES = (
    re.compile(r"[$€£]\s*(\d+(?:[.,]\d{1,2})?)"),
    re.compile(r"(\d+(?:[.,]\d{1,2})?)\s*(?:\$|€|£|dollars?|usd|eur|euros?|bucks)\b", re.I),
)
_USER_RE = re.compile(r"\buser:" + _ID, re.IGNORECASE)
_REFUND_RE = re.compile(r"\b(refund|reembols|rembours|erstatt|rückerstatt)", re.IGNORECASE)
_STATUS_RE = re.compile(
    r"\b(where(?:'s|\s+is)\s+my\s+(?:order|package|parcel|delivery)"
    r"|order\s+status|status\s+of\s+(?:my\s+|the\s+)?order"
    r"|track(?:ing)?\s+(?:my\s+|the\s+)?order|check\s+(?:on\s+)?(?:my\s+|the\s+)?order"
    r"|(?:has|did)\s+my\s+order|look\s*up\s+(?:my\s+|the\s+)?order"
    r"|dónde\s+está\s+mi\s+pedido|où\s+est\s+ma\s+commande|wo\s+ist\s+meine\s+bestellung)",
    re.IGNORECASE,
)
_PASSWORD_RE = re.compile(
    r"\b((?:reset|forgot|forgotten|change|recover)\s+(?:my\s+|the\s+)?password"
    r"|password\s+reset|can'?t\s+log\s*in)",
    re.IGNORECASE,
)
_OUTAGE_RE = re.compile(
    r"\b(outage|down|not\s+working|isn'?t\s+working|doesn'?t\s+work|broken|unavailable"
    r"|unreachable|5\d\d\s+errors?|timing\s+out)\b",
    re.IGNORECASE,
)
_SERVICES: tuple[tuple[str, str], ...] = (
    (r"\bapi\b", "api"),
    (r"\bdashboard\b", "dashboard"),
    (r"\b(login|log\s*in|sign[\s-]?in|sso)\b", "login"),
    (r"\b(billing|payments?|checkout)\b", "billing"),
    (r"\b(e-?mails?|notifications?)\b", "email"),
    (r"\b(website|web\s*site|site)\b", "website"),
    (r"\b(mobile\s+)?app\b", "app"),
    (r"\b(database|db)\b", "database"),
    (r"\b(search)\b", "search"),
    (r"\b(webhooks?)\b", "webhooks"),
)
_DELETE_RE = re.compile(
    r"\b(delete|close|terminate|remove)\s+(?:my\s+|the\s+|this\s+)?account", re.IGNORECASE
)
_SUSPEND_RE = re.compile(r"\bsuspend", re.IGNORECASE)
_TRANSFER_RE = re.compile(r"\btransfer\s+(?:my\s+|the\s+|this\s+)?account", re.IGNORECASE)
_TRANSFER_TO_RE = re.compile(r"\bto\s+(user:[\w.-]+|[\w.+-]+@[\w-]+\.[\w.]+)", re.IGNORECASE)
_EXPORT_RE = re.compile(
    r"\b(export|download|copy\s+of)\s+(?:all\s+)?(?:my\s+)?(?:personal\s+)?data\b", re.IGNORECASE
)


def _order_id(text: str) -> str | None:
    match = _ORDER_RE.search(text) or _HASH_ID_RE.search(text)
    return match.group(1) if match else None


def _amount(text: str) -> float | None:
    for regex in _AMOUNT_RES:
        match = regex.search(text)
        if match:
            return float(match.group(1).replace(",", "."))
    return None


def _user_id(text: str) -> str:
    match = _USER_RE.search(text)
    return match.group(1) if match else "self"


def plan_calls(text: str, offered: set[str]) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Tool calls the text asks for, in execution order, limited to offered tools.

    Returns (calls, needs_order_id): the flag is set when an order tool fits but the text has no
    order number, so the answer asks for it instead of inventing one.
    """
    calls: list[tuple[str, dict[str, Any]]] = []
    needs_order = False
    order = _order_id(text)
    uid = _user_id(text)
    # Looking the order up first lets a "check and refund" request act on the lookup result.
    if "lookup_order" in offered and _STATUS_RE.search(text):
        if order:
            calls.append(("lookup_order", {"order_id": order}))
        else:
            needs_order = True
    if "check_outage" in offered and _OUTAGE_RE.search(text):
        lowered = text.lower()
        for pattern, service in _SERVICES:
            if re.search(pattern, lowered):
                calls.append(("check_outage", {"service": service}))
                break
    if "reset_password" in offered and _PASSWORD_RE.search(text):
        calls.append(("reset_password", {"user_id": uid}))
    if "issue_refund" in offered and _REFUND_RE.search(text):
        if order:
            args: dict[str, Any] = {"order_id": order}
            amount = _amount(text)
            if amount is not None:
                args["amount"] = amount
            calls.append(("issue_refund", args))
        else:
            needs_order = True
    if "export_personal_data" in offered and _EXPORT_RE.search(text):
        calls.append(("export_personal_data", {"user_id": uid}))
    if "suspend_account" in offered and _SUSPEND_RE.search(text):
        calls.append(("suspend_account", {"user_id": uid}))
    if "transfer_account" in offered and _TRANSFER_RE.search(text):
        args = {"user_id": uid}
        target = _TRANSFER_TO_RE.search(text)
        if target:
            args["new_owner"] = target.group(1)
        calls.append(("transfer_account", args))
    if "delete_account" in offered and _DELETE_RE.search(text):
        calls.append(("delete_account", {"user_id": uid}))
    return calls, needs_order and not calls


def loop_call(tools: list[ToolSpec]) -> tuple[str, dict[str, Any]] | None:
    """The fixed call `[sim:loop]` repeats; prefers lookup_order, else the first offered tool."""
    if not tools:
        return None
    for tool in tools:
        if tool.name == "lookup_order":
            return "lookup_order", {"order_id": "1"}
    tool = tools[0]
    required = tool.parameters.get("required", []) if isinstance(tool.parameters, dict) else []
    return tool.name, {str(name): "1" for name in required}
