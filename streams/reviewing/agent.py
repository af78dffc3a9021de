"""Review wiring: a reviewer's decision resumes the held task where it stopped.

Decisions are keyed by session id, so partition p of `human-decisions` belongs to the worker that
owns partition p of the `sessions` table: the decision is applied to the pending hold there (a
changelog write, committed before the decision's offset) and the session's runner picks the
resumed task up like any other queued task. Its answer goes out as a follow-up response of the
same request id.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from streams import channels
from streams import sessions as state
from streams.app import app
from streams.envelope import consume, dead_letter, log
from streams.execution.agent import runner
from streams.records import HumanDecision, now_ms
from streams.tables import sessions
from streams.telemetry import stage_span


@app.agent(channels.human_decisions, name="reviews")
async def reviews(stream):
    await consume(stream, HumanDecision, "reviews", take_decision)


async def take_decision(decision: HumanDecision, event: Any) -> None:
    """Applies one decision, or dead-letters it with the reason it cannot be applied."""
    attrs = {
        "agentstream.request.id": decision.request_id,
        "agentstream.session.id": decision.session_id,
        "agentstream.review.decision": decision.decision,
        "agentstream.review.reviewer": decision.reviewer,
    }
    topic = channels.human_decisions.get_topic_name()
    with stage_span(runner.tracer, topic, "review", event.headers, attrs) as span:
        current = sessions.get(decision.session_id)
        try:
            if current is None:
                raise state.DecisionRefused(f"no session {decision.session_id!r}")
            value, fresh = state.decide(current, asdict(decision), now_ms())
        except state.DecisionRefused as refused:
            span.set_attribute("agentstream.review.refused", str(refused))
            log.warning("decision on %s refused: %s", decision.request_id, refused)
            await dead_letter(event, f"human decision refused: {refused}")
            return
        span.set_attribute("agentstream.duplicate", not fresh)
    if fresh:
        runner.write(decision.session_id, value)
        log.info("%s of %s by %s: task resumed", decision.decision, decision.request_id, decision.reviewer)
    runner.kick(decision.session_id)
