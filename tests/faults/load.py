"""An independent load client for the drills: encodes requests itself, counts answers by id."""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from sinks.analytics import QueryError, run_query
from streams.events.codecs import get_codec
from streams.events.records import Request, Response, now_ms
from tests.harness import Pipeline

TOOL_TEXT = "Refund ${amount} for order 1234"
PLAIN_TEXTS = ("What are your opening hours?", "Where is my order 1234?", "Is the dashboard down?")


@dataclass
class Load:
    """Requests sent, by id, with whether each one asked for a refund (a tool call)."""

    sent: dict[str, Request] = field(default_factory=dict)
    refunds: set[str] = field(default_factory=set)
    tenant_id: str = "default"
    tenants: int = 1  # >1: users spread over that many tenants, `<tenant_id>-<n>`

    def make(self, i: int, sessions: int, tool_every: int = 4) -> Request:
        rid = f"r{i:06d}-{uuid.uuid4().hex[:6]}"
        sid = f"s{i % sessions:04d}"
        tool = tool_every > 0 and i % tool_every == 0
        text = TOOL_TEXT.format(amount=1 + i % 5) if tool else PLAIN_TEXTS[i % len(PLAIN_TEXTS)]
        req = Request(
            request_id=rid,
            session_id=sid,
            user_id=f"u{i % sessions}",
            tenant_id=self.tenant_id if self.tenants == 1 else f"{self.tenant_id}-{i % sessions % self.tenants}",
            text=text,
            created_ms=now_ms(),
        )
        self.sent[rid] = req
        if tool:
            self.refunds.add(rid)
        return req

    async def publish(
        self,
        pipeline: Pipeline,
        n: int,
        *,
        sessions: int,
        rate: float,
        start: int = 0,
        tool_every: int = 4,
        request_timeout_ms: int = 40_000,
    ) -> None:
        """n requests at `rate` per second (keyed by session, like any producer)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=pipeline.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=request_timeout_ms,
        )
        await producer.start()
        topic = pipeline.settings.topic("requests")
        codec = get_codec()
        began = time.monotonic()
        try:
            pending = []
            for i in range(start, start + n):
                req = self.make(i, sessions, tool_every)
                pending.append(
                    await producer.send(topic, codec.encode(req), key=req.session_id.encode())
                )
                due = began + (i - start + 1) / rate
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
            await asyncio.gather(*pending)
        finally:
            await producer.stop()


def count(responses: list[Response], expected: set[str]) -> dict[str, Any]:
    """lost / doubled / unexpected by request id, read from the responses topic."""
    per_id = collections.Counter(r.request_id for r in responses)
    return {
        "requests": len(expected),
        "answered": len(set(per_id) & expected),
        "lost": len(expected - set(per_id)),
        "doubled": sum(1 for rid, n in per_id.items() if n > 1),
        "unexpected": len(set(per_id) - expected),
        "statuses": dict(collections.Counter(r.status for r in responses)),
    }


async def settle(
    pipeline: Pipeline, expected: set[str], timeout_s: float
) -> tuple[list[Response], float]:
    """Waits until every expected id is answered, then a little longer for late duplicates."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        got = await pipeline.responses()
        if expected <= {r.request_id for r in got}:
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    took = time.monotonic() - started
    await asyncio.sleep(3.0)  # a copy published late (a resumed task) would show up by now
    return await pipeline.responses(), took


async def where_lost(
    pipeline: Pipeline, lost: set[str], sent: dict[str, Request]
) -> dict[str, Any]:
    """For a failed drill: how far the lost requests got (outbox? task state?) and their partitions."""
    if not lost:
        return {}
    codec = get_codec()
    in_outbox = set()
    for m in await pipeline.read_topic("outbox"):
        try:
            rid = codec.decode(m.value, Response).request_id
        except Exception:
            continue
        if rid in lost:
            in_outbox.add(rid)
    states: collections.Counter[str] = collections.Counter()
    sessions = await pipeline.sessions_changelog()
    for rid in lost:
        value = sessions.get(sent[rid].session_id) or {}
        queued = {t.get("request_id"): t for t in value.get("queue") or [] if isinstance(t, dict)}
        if rid in queued:
            position = list(queued).index(rid)
            states[f"queue[{min(position, 1)}]:{queued[rid].get('status')}"] += 1
        elif rid in (value.get("handled") or {}):
            states["handled-no-task"] += 1
        else:
            states["not-in-session"] += 1
    sessions_of_lost = collections.Counter(sent[rid].session_id for rid in lost)
    return {
        "lost_in_outbox": len(in_outbox),
        "lost_states": dict(states),
        "lost_sessions": len(sessions_of_lost),
        "lost_sample": sorted(lost)[:5],
    }


REPORTS: list[str] = []  # printed again at the end of the pytest run (tests/faults/conftest.py)


def report(name: str, figures: dict[str, Any]) -> None:
    """One JSON line per drill, for the closing note and the README table."""
    line = json.dumps({"fault": name, **figures})
    REPORTS.append(line)
    print(line)


def stored_spans(url: str) -> int:
    """Distinct spans in otel_traces, asked through the running sink's read-only endpoint."""
    try:
        _, rows = run_query(
            "SELECT uniqExact(SpanId) FROM agentstream.otel_traces", clickhouse_url=url
        )
    except (QueryError, OSError):
        return -1
    return int(rows[0][0]) if rows else -1
