"""The review queue as the topics tell it: escalations not yet followed by a decision."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.events.records import Escalation, HumanDecision


@dataclass(frozen=True)
class PendingReview:
    escalation: Escalation

    @property
    def request_id(self) -> str:
        return self.escalation.request_id

    @property
    def kind(self) -> str:
        """`tool` when a tool call waits for approval, `answer` when an answer does."""
        return "tool" if self.escalation.held_action else "answer"


def pending_reviews(
    escalations: Iterable[Escalation], decisions: Iterable[HumanDecision]
) -> list[PendingReview]:
    """The latest escalation of each request that no decision came after; high priority first,
    then oldest first. (A request escalated again after a decision is pending again.)"""
    latest: dict[str, Escalation] = {}
    for e in escalations:
        # The latest copy of the latest round: a task re-run after a crash escalates again, and
        # a decision refused before that (no hold written yet) must not hide the new copy.
        seen = latest.get(e.request_id)
        if seen is None or (e.follow_up, e.escalated_ms) > (seen.follow_up, seen.escalated_ms):
            latest[e.request_id] = e
    decided: dict[str, int] = {}
    for d in decisions:
        decided[d.request_id] = max(decided.get(d.request_id, -1), d.decided_ms)
    pending = [e for rid, e in latest.items() if decided.get(rid, -1) < e.escalated_ms]
    pending.sort(key=lambda e: (e.priority != "high", e.escalated_ms))
    return [PendingReview(e) for e in pending]


def last_decision(decisions: Iterable[HumanDecision], request_id: str) -> HumanDecision | None:
    mine = [d for d in decisions if d.request_id == request_id]
    return max(mine, key=lambda d: d.decided_ms) if mine else None
