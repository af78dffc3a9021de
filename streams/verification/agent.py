"""Verifier wiring: executed answers in; one response per request id out, escalations aside."""

from __future__ import annotations

from typing import Any

from streams import channels
from streams.app import app
from streams.envelope import consume, publish
from streams.records import Executed
from streams.runtime import pipeline_config, tracer
from streams.telemetry import (
    decision_attributes,
    headers_with_context,
    request_attributes,
    stage_span,
)
from streams.verification.logic import verify


@app.agent(channels.executed, name="verifier")
async def verifier(stream):
    await consume(stream, Executed, "verifier", check)


async def check(ex: Executed, event: Any) -> None:
    """Stateless: a re-emitted answer is verified again and the responder drops the copy."""
    topic = channels.executed.get_topic_name()
    with stage_span(tracer(), topic, "verifier", event.headers, request_attributes(ex)) as span:
        cfg = pipeline_config().for_version(ex.config_version)
        verdict = verify(ex, frozenset(cfg.policy.high_priority_tools))
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
        span.set_attribute("agentstream.complexity", ex.complexity)
        span.set_attribute("agentstream.follow_up", ex.follow_up)
        headers = headers_with_context(span)
        # The escalation itself was published by the runner before the answer (one copy per run).
        await publish(channels.outbox, verdict.response, headers)
