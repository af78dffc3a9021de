"""Budget wiring: reservations admit (or refuse) routed requests; settlements count actual use.

Keyed by tenant id, so one tenant's events are decided in order by one worker, and the `budgets`
table (changelog-backed) holds that tenant's and its users' windows. An admitted request goes on
to the domain agents; a refused one is answered `error` with the ceiling and when it resets; a
`degraded` ceiling admits it on the cheapest model with a smaller output budget instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import faust

from streams import channels
from streams.app import app
from streams.budgets.estimate import degraded_max_tokens
from streams.budgets.ledger import reserve, settle
from streams.codecs import get_codec
from streams.envelope import consume, publish
from streams.records import BudgetEvent, Response, Routed, now_ms
from streams.runtime import pipeline_config, tracer
from streams.telemetry import headers_with_context, request_attributes, stage_span

budgets = app.tables.add(
    faust.Table(
        app, name="budgets", default=None,
        schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
    )
)
"""tenant id -> that tenant's budget value (`streams.budgets.ledger`)."""


@app.agent(channels.budget, name="budgets")
async def budget_stage(stream):
    await consume(stream, BudgetEvent, "budgets", handle)


async def handle(ev: BudgetEvent, event: Any) -> None:
    ceilings = pipeline_config().budgets
    if ev.kind == "settle":
        value, _ = settle(
            budgets.get(ev.tenant_id), ceilings, ev.tenant_id, ev.user_id, ev.request_id, ev.settle_id,
            ev.tokens, ev.cost_usd, now_ms(),
        )
        budgets[ev.tenant_id] = value
        return
    if ev.kind != "reserve":
        raise ValueError(f"unknown budget event kind {ev.kind!r}")
    routed = get_codec().decode(ev.routed, Routed)
    cheaper = (ev.cheaper_tokens, ev.cheaper_cost_usd) if ev.cheaper_model else None
    value, admission = reserve(
        budgets.get(ev.tenant_id), ceilings, ev.tenant_id, ev.user_id, ev.request_id, ev.tokens, ev.cost_usd,
        now_ms(), cheaper,
    )
    budgets[ev.tenant_id] = value
    topic = channels.budget.get_topic_name()
    with stage_span(tracer(), topic, "budget", event.headers, request_attributes(routed)) as span:
        span.set_attribute("agentstream.budget.admitted", admission.admitted)
        span.set_attribute("agentstream.budget.reserved_tokens", ev.tokens)
        span.set_attribute("agentstream.budget.reserved_cost_usd", ev.cost_usd)
        if admission.reason:
            span.set_attribute("agentstream.budget.reason", admission.reason)
        headers = headers_with_context(span)
    if not admission.admitted:
        await publish(channels.outbox, refusal(routed, admission.reason), headers)
        return
    if admission.degraded:
        routed = dataclasses.replace(
            routed,
            model=ev.cheaper_model,
            max_tokens=degraded_max_tokens(routed.max_tokens),
            notes=[*routed.notes, f"budget degraded: {admission.reason}; answered with {ev.cheaper_model}"],
        )
    # A redelivered reservation gets the same decision and is forwarded again: the domain agent
    # drops a task it already has.
    await publish(channels.routed, routed, headers)


def refusal(routed: Routed, reason: str) -> Response:
    responded = now_ms()
    return Response(
        request_id=routed.request_id,
        session_id=routed.session_id,
        user_id=routed.user_id,
        tenant_id=routed.tenant_id,
        status="error",
        reason=f"budget: {reason}",
        domain=routed.domain,
        model=routed.model,
        language=routed.language,
        rollout_arm=routed.rollout_arm,
        config_version=routed.config_version,
        created_ms=routed.created_ms,
        responded_ms=responded,
        latency_ms=float(max(0, responded - routed.created_ms)),
    )
