"""Where the console's data comes from: ClickHouse through `agentstream query`'s path, Kafka for
live state (review queue, follow-up answers, status), and the decision topic for actions.

ClickHouse is read with `sinks.analytics.run_query` (the running sink's read-only endpoint for
embedded chDB, or the server named by CLICKHOUSE_URL), so the console needs no engine of its
own and sees exactly what analysts see; blocking calls run in threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sinks.analytics import run_query, trace_tree
from streams.config.pipeline import PipelineConfig
from streams.config.settings import Settings
from streams.console.queries import Query
from streams.events.records import HumanDecision, Response
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import RESPONSES
from streams.stages.reviewing.queue import PendingReview
from streams.telemetry.redaction import Redactor

__all__ = ["Sources"]


@dataclass(frozen=True)
class Sources:
    """One console's connections; immutable, shared by every request handler."""

    settings: Settings
    config: PipelineConfig
    redactor: Redactor

    @property
    def clickhouse_url(self) -> str:
        return self.settings.clickhouse_url

    def redact(self, text: str) -> str:
        """Personal data out of free text; JSON documents keep their shape."""
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            return self.redactor.redact_structured(text)
        return self.redactor.redact(text)

    async def rows(self, query: Query) -> list[dict[str, Any]]:
        columns, rows = await asyncio.to_thread(
            run_query, query.sql, clickhouse_url=self.clickhouse_url, params=query.params
        )
        return [dict(zip(columns, row, strict=True)) for row in rows]

    async def trace(self, request_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(trace_tree, self.clickhouse_url, request_id)

    async def review_state(self) -> tuple[list[PendingReview], list[HumanDecision]]:
        from streams.cli.review import review_state

        return await review_state()

    async def sessions(self, session_ids: set[str]) -> dict[str, Any]:
        """Latest value of these sessions in the sessions changelog (works without a worker)."""
        if not session_ids:
            return {}
        wanted = {json.dumps(s).encode(): s for s in session_ids}  # faust writes keys as JSON
        latest: dict[str, Any] = {}
        topic = f"{self.settings.app_id}-sessions-changelog"
        for m in await read_all(self.settings.kafka_bootstrap_servers, topic):
            sid = wanted.get(m.key or b"")
            if sid is not None:
                latest[sid] = json.loads(m.value) if m.value else None
        return latest

    async def follow_ups(self, request_ids: set[str]) -> list[Response]:
        """Follow-up answers (after a human decision) to these requests."""
        from streams.events.codecs import DecodeError, get_codec

        if not request_ids:
            return []
        codec, out = get_codec(), []
        for m in await read_all(self.settings.kafka_bootstrap_servers, self.settings.topic(RESPONSES)):
            try:
                resp = codec.decode(m.value, Response)
            except DecodeError:
                continue
            if resp.follow_up >= 1 and resp.request_id in request_ids:
                out.append(resp)
        return out

    async def publish(self, decision: HumanDecision) -> None:
        from streams.cli.review import publish_decision

        await publish_decision(decision)

    async def status(self) -> dict[str, Any]:
        from streams.cli.status import status_report

        return await status_report()
