"""Router wiring: requests in; routed requests, or terminal responses, out."""

from __future__ import annotations

from typing import Any

from streams import channels
from streams.app import app
from streams.envelope import dead_letter, decode_or_dead_letter, die, publish
from streams.records import Request, Response
from streams.routing.logic import route, terminal_response
from streams.runtime import pipeline_config, tracer
from streams.telemetry import (
    decision_attributes,
    headers_with_context,
    mark_error,
    request_attributes,
    stage_span,
)


@app.agent(channels.requests, name="router")
async def router(stream):
    try:
        async for event in stream.events():
            req = await decode_or_dead_letter(event, Request)
            if req is None:
                continue
            await handle(req, event)
    except Exception as exc:
        die("router", exc)


async def handle(req: Request, event: Any) -> None:
    """Stateless: a redelivered request is routed again; the domain agent drops a task it already
    has and the responder drops an answer that already went out, so nothing is marked here before
    it is sent (a mark written before a send that never happened loses the request)."""
    cfg = pipeline_config()
    topic = channels.requests.get_topic_name()
    with stage_span(tracer(), topic, "router", event.headers, request_attributes(req)) as span:
        try:
            decision = route(req, cfg)
        except Exception as exc:  # one bad request must not stop the stage
            await dead_letter(event, f"router failed on request {req.request_id}: {exc!r}")
            mark_error(span, type(exc).__name__, str(exc))
            decision = terminal_response(req, "error", f"internal error while routing: {exc}", cfg.version)
        if isinstance(decision, Response):
            span.set_attributes(
                decision_attributes(decision, verdict=decision.status, reasons=[decision.reason], llm_calls=0, cost_usd=0.0)
            )
            await publish(channels.outbox, decision, headers_with_context(span))
        else:
            span.set_attributes(
                {
                    "agentstream.route": decision.domain,
                    "gen_ai.request.model": decision.model,
                    "agentstream.rollout.arm": decision.rollout_arm,
                    "agentstream.language": decision.language,
                    "agentstream.config.version": decision.config_version,
                    "agentstream.notes": decision.notes,
                }
            )
            # A re-delivered routed request is sent again: the domain agent drops it if it has it.
            await publish(channels.routed, decision, headers_with_context(span))
