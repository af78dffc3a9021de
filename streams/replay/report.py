"""A replay run's report as one span on the traces topic, so the sink files it in ClickHouse.

A replay's own records stay in its namespace; only its report is worth keeping where analysts
look. The sink is the one writer of the embedded ClickHouse directory (one owner per chDB
directory), so the report reaches it the way every other row does: as a span it maps to a
`replay_reports` row (`sinks.rows.replay_report_row`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from sinks.rows import REPLAY_REPORT_MARK
from streams.config.settings import Settings
from streams.events.codecs import get_codec
from streams.events.records import Span
from streams.kafka.topics import TRACES
from streams.replay.shadow import Comparison
from streams.telemetry import attributes as attr

MAX_DIFFERING = 500  # requests listed per report; the count is in the summary either way


def differing(comparisons: Iterable[Comparison]) -> list[dict[str, Any]]:
    """The requests whose replayed decision differs: what each side decided, and how."""
    out = []
    for c in comparisons:
        if not c.differences:
            continue
        new = c.replayed
        out.append({
            "request_id": c.request_id,
            "differences": c.differences,
            "original": {"domain": c.original.domain, "model": c.original.model, "status": c.original.status},
            "replayed": {"domain": new.domain, "model": new.model, "status": new.status} if new else None,
        })
        if len(out) >= MAX_DIFFERING:
            break
    return out


def report_span(
    summary: Mapping[str, Any], differ: list[dict[str, Any]], *, report_id: str | None = None,
    now_ns: int | None = None,
) -> Span:
    """The span that carries `summary` (as `agentstream replay` prints it) and the differences."""
    now = now_ns or time.time_ns()
    rid = report_id or uuid.uuid4().hex
    return Span(
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        name="replay report",
        kind="Internal",
        service_name="agentstream-replay",
        resource_attributes={"service.name": "agentstream-replay"},
        scope_name="agentstream",
        start_time_unix_nano=now,
        end_time_unix_nano=now,
        attributes={
            REPLAY_REPORT_MARK: "true",
            attr.AGENTSTREAM_REPLAY_ID: rid,
            attr.AGENTSTREAM_REPLAY_SUMMARY: json.dumps(dict(summary), default=str),
            attr.AGENTSTREAM_REPLAY_DIFFERING: json.dumps(differ),
        },
        status_code="Ok",
    )


async def publish_report(settings: Settings, span: Span) -> None:
    """Append the report span to this namespace's traces topic (keyed by the report id)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        key = span.attributes[attr.AGENTSTREAM_REPLAY_ID].encode()
        await producer.send_and_wait(settings.topic(TRACES), get_codec().encode(span), key=key)
    finally:
        await producer.stop()
