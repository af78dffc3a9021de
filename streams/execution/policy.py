"""Oversight policy: which tool calls a human must approve before they run."""

from __future__ import annotations

from typing import Any

from streams.config import PolicyConfig

SENSITIVE_ARGS = ("ssn", "card_number", "password", "date_of_birth")


def hold_reason(name: str, arguments: dict[str, Any], policy: PolicyConfig) -> str | None:
    """The reason to hold this call for a human, or None when it may run."""
    if name in policy.held_tools:
        return f"{name} is a high-stakes account action and needs human approval"
    if name == "issue_refund":
        try:
            amount = float(arguments.get("amount", 0))
        except (TypeError, ValueError):
            return f"refund amount {arguments.get('amount')!r} is not a number"
        if amount > policy.refund_hold_above:
            return (
                f"refund of ${amount:,.2f} exceeds the ${policy.refund_hold_above:,.2f} "
                "threshold and needs human approval"
            )
    touched = [a for a in SENSITIVE_ARGS if a in arguments]
    if touched:
        return f"{name} touches sensitive data ({', '.join(touched)}) and needs human approval"
    return None
