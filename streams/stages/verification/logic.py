"""The verifier's checks as pure functions: respond, or escalate to a human with the reasons."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.config.pipeline import PolicyConfig
from streams.events.records import Escalation, Executed, Response, decided_of, identity_of, now_ms

REFUSAL = re.compile(
    r"^\s*(i('m| am) (sorry|unable)|i can(no|')t (help|assist)|as an ai\b)", re.IGNORECASE
)


@dataclass(frozen=True)
class Checks:
    """What the verifier holds for a human; built from the config's policy (`checks_for`), so
    the tool lists and the personal-data labels are configuration, not code."""

    held_tools: frozenset[str] = frozenset()  # executed without a human's approval: escalate
    high_priority_tools: frozenset[str] = frozenset()  # holds of these are reviewed first
    # Labels of personal data found in a text (the redactor's detector, filtered by the policy).
    personal_data: Callable[[str], list[str]] = field(default=lambda text: [])


def checks_for(policy: PolicyConfig, detect: Callable[[str, frozenset[str]], list[tuple[int, int, str]]]) -> Checks:
    """The checks a config version asks for; `detect` is the redactor's `findings`, so there is
    one personal-data detector in the product."""
    labels = frozenset(policy.answer_personal_data)
    return Checks(
        held_tools=frozenset(policy.held_tools),
        high_priority_tools=frozenset(policy.high_priority_tools),
        personal_data=lambda text: [label for _, _, label in detect(text, labels)] if labels else [],
    )


@dataclass(frozen=True)
class Verdict:
    response: Response
    escalation: Escalation | None


def findings(ex: Executed, checks: Checks) -> list[str]:
    """Reasons a human should look at this answer before (or instead of) the user."""
    if ex.status != "ok":
        return []
    # What a human already approved is not escalated again.
    approved = {s.name for s in ex.steps if s.kind == "review" and s.status in ("approved", "edited")}
    if "answer" in approved:
        return []
    reasons: list[str] = []
    if not ex.answer.strip():
        reasons.append("empty answer from the model")
    elif REFUSAL.search(ex.answer):
        reasons.append("the model refused to answer")
    for label in dict.fromkeys(checks.personal_data(ex.answer)):
        reasons.append(f"possible personal data in the answer ({label})")
    for step in ex.steps:
        if step.kind == "tool_call" and step.name in checks.held_tools and step.result not in approved:
            reasons.append(f"high-stakes action {step.name} was executed")
    return reasons


def verify(ex: Executed, checks: Checks) -> Verdict:
    reasons = list(ex.reasons) + findings(ex, checks)
    status = ex.status
    if status == "ok" and reasons:
        status = "escalated"
    notes = list(ex.notes)
    if status == "ok" and any(n.startswith("budget degraded") for n in notes):
        status = "degraded"  # answered, but on the cheaper model a budget ceiling asked for
    if status == "ok":
        reason = "answered"
    elif status == "escalated":
        reason = "escalated to human review: " + "; ".join(reasons)
    else:
        reason = "; ".join(reasons) or status
    if notes:
        reason += " (" + "; ".join(notes) + ")"
    responded = now_ms()
    answer = ex.answer
    if status == "escalated":
        answer = "A member of our team will review your request and get back to you shortly."
    response = Response(
        **identity_of(ex),
        status=status,
        reason=reason,
        answer=answer,
        **decided_of(ex),
        input_tokens=ex.input_tokens,
        output_tokens=ex.output_tokens,
        created_ms=ex.created_ms,
        responded_ms=responded,
        latency_ms=float(max(0, responded - ex.created_ms)),
        follow_up=ex.follow_up,
        cost_usd=ex.cost_usd,
    )
    escalation = None
    if status == "escalated":
        # The hold of this round: the last one, after any earlier reviewed holds.
        held = next((s for s in reversed(ex.steps) if s.kind == "hold"), None)
        if held and any(s.kind == "review" and s.index > held.index for s in ex.steps):
            held = None
        escalation = Escalation(
            **identity_of(ex),
            domain=ex.domain,
            reasons=reasons,
            draft_answer=ex.answer,
            held_action=(
                json.dumps({"tool": held.name, "arguments": json.loads(held.arguments or "{}")})
                if held
                else ""
            ),
            created_ms=ex.created_ms,
            escalated_ms=responded,
            priority="high" if held and held.name in checks.high_priority_tools else "normal",
            follow_up=ex.follow_up,
        )
    return Verdict(response, escalation)
