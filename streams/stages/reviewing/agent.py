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

import faust

from streams.events.records import HumanDecision, now_ms
from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import consume, dead_letter, log
from streams.stages.execution.agent import runner
from streams.state import sessions as state
from streams.state.tables import sessions
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import stage_span


@app.agent(stream_topics.human_decisions, name="reviews")
async def reviews(stream: faust.StreamT[bytes]) -> None:
    await consume(stream, HumanDecision, "reviews", take_decision)


async def take_decision(decision: HumanDecision, event: Any) -> None:
    """Applies one decision, or dead-letters it with the reason it cannot be applied."""
    attrs = {
        attr.AGENTSTREAM_REQUEST_ID: decision.request_id,
        attr.AGENTSTREAM_SESSION_ID: decision.session_id,
        attr.AGENTSTREAM_REVIEW_DECISION: decision.decision,
        attr.AGENTSTREAM_REVIEW_REVIEWER: decision.reviewer,
    }
    topic = stream_topics.human_decisions.get_topic_name()
    with stage_span(runner.tracer, topic, "review", event.headers, attrs) as span:
        current = sessions.get(decision.session_id)
        try:
            if current is None:
                raise state.DecisionRefused(f"no session {decision.session_id!r}")
            value, fresh = state.decide(current, asdict(decision), now_ms())
        except state.DecisionRefused as refused:
            span.set_attribute(attr.AGENTSTREAM_REVIEW_REFUSED, str(refused))
            log.warning("decision on %s refused: %s", decision.request_id, refused)
            await dead_letter(event, f"human decision refused: {refused}")
            return
        span.set_attribute(attr.AGENTSTREAM_DUPLICATE, not fresh)
    if fresh:
        runner.write(decision.session_id, value)
        log.info("%s of %s by %s: task resumed", decision.decision, decision.request_id, decision.reviewer)
    runner.kick(decision.session_id)
