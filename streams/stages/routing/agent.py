"""Router wiring: requests in; routed requests, or terminal responses, out."""

from __future__ import annotations

from typing import Any

import faust

from streams.config.pipeline import PipelineConfig
from streams.control.rollout import ROLLOUT, pick_arm
from streams.events.codecs import get_codec
from streams.events.records import Request, Response, Routed
from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import consume, dead_letter, publish
from streams.stages.budgets.estimate import reservation
from streams.stages.routing.complexity import HeuristicComplexity, choose_model
from streams.stages.routing.guard import GuardModelScreen
from streams.stages.routing.logic import identity_problem, route, terminal_response
from streams.stages.routing.screening import Assessment
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import (
    decision_attributes,
    headers_with_context,
    mark_error,
    request_attributes,
    stage_span,
)


async def follow_control() -> None:
    """Rollout changes reach this worker's router within a second (no restart). Started with
    the app, not after the tables' recovery as an `app.task` would be: the router's first
    request waits until the control topic was read to its end."""
    await app.services.control_watcher.follow()


app.startup_work.append(follow_control)


@app.agent(stream_topics.requests, name="router")
async def router(stream: faust.StreamT[bytes]) -> None:
    await consume(stream, Request, "router", handle)


async def handle(req: Request, event: Any) -> None:
    """Stateless: a redelivered request is routed again; the domain agent drops a task it already
    has and the responder drops an answer that already went out, so nothing is marked here before
    it is sent (a mark written before a send that never happened loses the request)."""
    watcher = app.services.control_watcher
    await watcher.wait_caught_up()
    arm, cfg = pick_arm(req.user_id, app.services.pipeline_config, watcher.get(ROLLOUT))
    problem = identity_problem(req, event.message.key)
    if problem:
        # No safe place to answer: a response keyed by a wrong or empty session could reach
        # another user's session. The original bytes and the reason go to the dead-letter topic.
        await dead_letter(event, problem)
        return
    topic = stream_topics.requests.get_topic_name()
    with stage_span(app.services.tracer, topic, "router", event.headers, request_attributes(req)) as span:
        try:
            decision = route(req, cfg, raw_bytes=len(event.message.value or b""), arm=arm)
        except Exception as exc:  # one bad request must not stop the stage
            await dead_letter(event, f"router failed on request {req.request_id}: {exc!r}")
            mark_error(span, type(exc).__name__, str(exc))
            decision = terminal_response(req, "error", f"internal error while routing: {exc}", cfg.version)
        if isinstance(decision, Response):
            span.set_attributes(
                decision_attributes(decision, verdict=decision.status, reasons=[decision.reason], llm_calls=0, cost_usd=0.0)
            )
            await publish(stream_topics.outbox, decision, headers_with_context(span))
        else:
            guard = await _guard_verdict(decision, cfg)
            if guard is not None:
                blocked = terminal_response(req, "blocked", guard.reason(), cfg.version)
                span.set_attributes(
                    decision_attributes(blocked, verdict="blocked", reasons=[blocked.reason], llm_calls=1, cost_usd=0.0)
                )
                await publish(stream_topics.outbox, blocked, headers_with_context(span))
                return
            span.set_attributes(model_choice_attributes(decision, cfg))
            span.set_attributes(
                {
                    attr.AGENTSTREAM_ROUTE: decision.domain,
                    attr.GEN_AI_REQUEST_MODEL: decision.model,
                    attr.AGENTSTREAM_ROLLOUT_ARM: decision.rollout_arm,
                    attr.AGENTSTREAM_LANGUAGE: decision.language,
                    attr.AGENTSTREAM_CONFIG_VERSION: decision.config_version,
                    attr.AGENTSTREAM_NOTES: decision.notes,
                }
            )
            # A re-delivered routed request is sent again: the domain agent drops it if it has it.
            if app.services.pipeline_config.budgets:
                await reserve_budget(decision, cfg, headers_with_context(span))
            else:
                await publish(stream_topics.routed, decision, headers_with_context(span))


async def reserve_budget(routed: Routed, cfg: PipelineConfig, headers: dict[str, bytes]) -> None:
    """To the budget stage first (keyed by tenant): it forwards the request once admitted."""
    codec = get_codec()
    event = reservation(routed, cfg, codec.encode(routed))
    await stream_topics.budget.send(key=routed.tenant_id.encode(), value=codec.encode(event), headers=headers)


def model_choice_attributes(routed: Routed, cfg: PipelineConfig) -> dict[str, Any]:
    """Why this model: the complexity estimate, its inputs and the rule that picked the model."""
    complexity = HeuristicComplexity().estimate(routed.text, routed.domain)
    _, why = choose_model(complexity.level, cfg.domains[routed.domain], cfg.models)
    return {
        attr.AGENTSTREAM_COMPLEXITY: complexity.level,
        attr.AGENTSTREAM_COMPLEXITY_SCORE: complexity.score,
        **{f"agentstream.complexity.{k}": v for k, v in complexity.inputs.items()},
        attr.AGENTSTREAM_MODEL_REASON: why,
    }


async def _guard_verdict(routed: Routed, cfg: PipelineConfig) -> Assessment | None:
    """The guard model's blocking verdict on the text or a carried-over turn, if one is
    configured and it blocks; None otherwise."""
    if not cfg.router.guard_model:
        return None
    guard = GuardModelScreen(
        app.services.provider,
        cfg.router.guard_model,
        threshold=cfg.router.guard_threshold,
        fail_closed=cfg.router.guard_fail_closed,
    )
    texts = [("text", routed.text)] + [(f"context message {i + 1}", m.content) for i, m in enumerate(routed.context)]
    for where, text in texts:
        verdict = await guard.assess(text, where, call_key=f"{routed.request_id}:guard:{where}")
        if verdict.blocked:
            return verdict
    return None
