"""Oversight policy: which tool calls a human must approve before they run."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

from streams.config.pipeline import PolicyConfig
from streams.state.model import Session, StepState

SENSITIVE_ARGS = ("ssn", "card_number", "password", "date_of_birth")


def hold_reason(
    name: str, arguments: dict[str, Any], policy: PolicyConfig, refunded_before: float = 0.0
) -> str | None:
    """The reason to hold this call for a human, or None when it may run.

    `refunded_before` is what this session was already refunded within the policy's window: a
    run of small refunds that together pass the threshold is held like one large refund."""
    if name in policy.held_tools:
        return f"{name} is a high-stakes account action and needs human approval"
    if name == "issue_refund":
        amount = refund_amount(arguments.get("amount"))
        if amount is None:
            return f"refund amount {str(arguments.get('amount'))[:40]!r} is not a positive number"
        if amount > policy.refund_hold_above:
            return (
                f"refund of ${amount:,.2f} exceeds the ${policy.refund_hold_above:,.2f} "
                "threshold and needs human approval"
            )
        total = refunded_before + amount
        if total > policy.refund_session_limit:
            hours = policy.refund_window_s / 3600
            return (
                f"refunds in this session would total ${total:,.2f} within {hours:g} h, over the "
                f"${policy.refund_session_limit:,.2f} limit, and need human approval"
            )
    touched = [a for a in SENSITIVE_ARGS if a in arguments]
    if touched:
        return f"{name} touches sensitive data ({', '.join(touched)}) and needs human approval"
    return None


def refund_amount(value: Any) -> float | None:
    """A refund amount as a positive finite number, or None (NaN, inf, negative, zero, a bool,
    a string that is not a number): such a call is held, never executed."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = float(value)
    except ValueError:
        return None
    return amount if math.isfinite(amount) and amount > 0 else None


def refunded(session: Session, since_ms: int) -> float:
    """Sum of the refunds executed by the session's finished tasks created at or after `since_ms`
    (whole tasks of a value written before `finished` existed included)."""
    before = sum(refunded_by(t.steps) for t in session.history if int(t.routed.get("created_ms", 0)) >= since_ms)
    return before + sum(f.refunded for f in session.finished if f.created_ms >= since_ms)


def refunded_by(steps: Sequence[StepState]) -> float:
    """Sum of the refunds executed (an `issue_refund` call whose result is ok) in these steps."""
    total = 0.0
    for call, result in itertools.pairwise(steps):
        if (
            call.kind == "tool_call"
            and call.name == "issue_refund"
            and result.kind == "tool_result"
            and result.status == "ok"
        ):
            try:
                total += float(json.loads(result.result or "{}").get("amount", 0))
            except (ValueError, TypeError, AttributeError):
                continue
    return total
