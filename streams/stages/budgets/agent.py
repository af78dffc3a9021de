"""Budget wiring: reservations admit (or refuse) routed requests; charges (one per LLM call)
and settlements (one per task run) count actual use.

Keyed by tenant id, so one tenant's events are decided in order by one worker, and the `budgets`
table (changelog-backed) holds that tenant's and its users' windows. An admitted request goes on
to the domain agents; a refused one is answered `error` with the ceiling and when it resets; a
`degraded` ceiling admits it on the cheapest model with a smaller output budget instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import faust

from streams.events.codecs import get_codec
from streams.events.records import BudgetEvent, Response, Routed, decided_of, identity_of, now_ms
from streams.kafka import stream_topics
from streams.kafka.app import active_partitions, app, ownership_settled
from streams.kafka.envelope import consume, publish
from streams.kafka.partitioning import partition_for
from streams.stages.budgets.estimate import degraded_max_tokens
from streams.stages.budgets.ledger import RECORD_TTL_MS, charge, reserve, settle
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import headers_with_context, request_attributes, stage_span


class TenantKeyedTable(faust.Table[str, Any]):
    """`tenant` (counters) and `tenant|request_id` (one request's record) live on the tenant's
    partition of the budget topic, so a record can also be written (expired) outside an event."""

    def partition_for_key(self, key: Any) -> int:
        return partition_for(str(key).split("|", 1)[0], self.app.conf.topic_partitions)


budgets = TenantKeyedTable(
    app, name="budgets", default=None,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)
app.tables.add(budgets)
"""`tenant` -> counters and open reservations; `tenant|request_id` -> that request's record."""


@app.agent(stream_topics.budget, name="budgets")
async def budget_stage(stream: faust.StreamT[bytes]) -> None:
    await consume(stream, BudgetEvent, "budgets", handle)


async def handle(ev: BudgetEvent, event: Any) -> None:
    ceilings = app.services.pipeline_config.budgets
    rkey = f"{ev.tenant_id}|{ev.request_id}"
    # The tenant value records the offset of the last event applied to it: a redelivered event
    # changes only the value (tenant or request record) that a crash left without it.
    offset = event.message.offset
    if ev.kind == "settle":
        value, record, applied = settle(
            budgets.get(ev.tenant_id), budgets.get(rkey), ceilings, ev.tenant_id, ev.user_id, ev.request_id,
            ev.settle_id, ev.tokens, ev.cost_usd, now_ms(), offset=offset,
        )
        if applied:
            budgets[rkey] = record
            budgets[ev.tenant_id] = value
        return
    if ev.kind == "charge":
        run = ev.settle_id.rsplit("@", 1)[0]
        value, record, applied = charge(
            budgets.get(ev.tenant_id), budgets.get(rkey), ceilings, ev.tenant_id, ev.user_id, ev.request_id,
            run, ev.settle_id, ev.tokens, ev.cost_usd, now_ms(), offset=offset,
        )
        if applied:
            budgets[rkey] = record
            budgets[ev.tenant_id] = value
        return
    if ev.kind != "reserve":
        raise ValueError(f"unknown budget event kind {ev.kind!r}")
    routed = get_codec().decode(ev.routed, Routed)
    cheaper = (ev.cheaper_tokens, ev.cheaper_cost_usd) if ev.cheaper_model else None
    seen, current = budgets.get(rkey), budgets.get(ev.tenant_id)
    value, record, admission = reserve(
        current, seen, ceilings, ev.tenant_id, ev.user_id, ev.request_id, ev.tokens,
        ev.cost_usd, now_ms(), cheaper, offset=offset,
    )
    if seen is None:
        budgets[rkey] = record
    if value != current:
        budgets[ev.tenant_id] = value
    topic = stream_topics.budget.get_topic_name()
    with stage_span(app.services.tracer, topic, "budget", event.headers, request_attributes(routed)) as span:
        span.set_attribute(attr.AGENTSTREAM_BUDGET_ADMITTED, admission.admitted)
        span.set_attribute(attr.AGENTSTREAM_BUDGET_RESERVED_TOKENS, ev.tokens)
        span.set_attribute(attr.AGENTSTREAM_BUDGET_RESERVED_COST_USD, ev.cost_usd)
        if admission.reason:
            span.set_attribute(attr.AGENTSTREAM_BUDGET_REASON, admission.reason)
        headers = headers_with_context(span)
    if not admission.admitted:
        await publish(stream_topics.outbox, refusal(routed, admission.reason), headers)
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
    await publish(stream_topics.routed, routed, headers)


@app.timer(interval=600.0)
async def expire_records() -> None:
    """Per-request records older than their TTL go (redeliveries come within minutes)."""
    if not ownership_settled(app):
        return
    cutoff = now_ms() - RECORD_TTL_MS
    owned = set(active_partitions(app, stream_topics.budget.get_topic_name()))
    for key, value in list(budgets.items()):
        if "|" in key and value and value.get("at_ms", 0) < cutoff and budgets.partition_for_key(key) in owned:
            del budgets[key]


def refusal(routed: Routed, reason: str) -> Response:
    responded = now_ms()
    return Response(
        **identity_of(routed),
        status="error",
        reason=f"budget: {reason}",
        **decided_of(routed),
        created_ms=routed.created_ms,
        responded_ms=responded,
        latency_ms=float(max(0, responded - routed.created_ms)),
    )
