"""Verifier wiring: executed answers in; one response per request id out, escalations aside."""

from __future__ import annotations

from typing import Any

import faust

from streams.events.records import Executed
from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import consume, publish
from streams.stages.verification.logic import verify
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import (
    decision_attributes,
    headers_with_context,
    request_attributes,
    stage_span,
)


@app.agent(stream_topics.executed, name="verifier")
async def verifier(stream: faust.StreamT[bytes]) -> None:
    await consume(stream, Executed, "verifier", check)


async def check(ex: Executed, event: Any) -> None:
    """Stateless: a re-emitted answer is verified again and the responder drops the copy."""
    topic = stream_topics.executed.get_topic_name()
    with stage_span(app.services.tracer, topic, "verifier", event.headers, request_attributes(ex)) as span:
        cfg = app.services.pipeline_config.for_version(ex.config_version)
        verdict = verify(ex, app.services.verifier_checks(ex.config_version))
        cost = cfg.cost_usd(ex.model, ex.input_tokens, ex.output_tokens)
        reasons = verdict.escalation.reasons if verdict.escalation else list(ex.reasons)
        span.set_attributes(
            decision_attributes(
                verdict.response,
                verdict="escalate" if verdict.escalation else "pass",
                reasons=reasons,
                llm_calls=ex.llm_calls,
                cost_usd=cost,
            )
        )
        span.set_attribute(attr.AGENTSTREAM_COMPLEXITY, ex.complexity)
        span.set_attribute(attr.AGENTSTREAM_FOLLOW_UP, ex.follow_up)
        headers = headers_with_context(span)
        # The escalation itself was published by the runner before the answer (one copy per run).
        await publish(stream_topics.outbox, verdict.response, headers)
