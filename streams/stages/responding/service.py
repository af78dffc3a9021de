"""Faust wiring of the responder: it runs inside every worker, in its own consumer group."""

from __future__ import annotations

import mode

from streams.kafka import topics
from streams.kafka.app import app
from streams.kafka.envelope import die
from streams.stages.responding.responder import Responder, ResponderConfig

_settings = app.agentstream_settings


@app.service
class ResponderService(mode.Service):
    """Starts after the app (topics exist by then) and stops before its producer."""

    responder: Responder | None = None

    async def on_started(self) -> None:
        self.responder = Responder(
            ResponderConfig(
                bootstrap=_settings.kafka_bootstrap_servers,
                group_id=f"{_settings.app_id}-responder",
                outbox=_settings.topic(topics.OUTBOX),
                responses=_settings.topic(topics.RESPONSES),
                deadletter=_settings.topic(topics.DEADLETTER),
                monitor=_settings.topic(topics.MONITOR),
                dedup_window_s=_settings.dedup_window_s,
                session_timeout_ms=int(_settings.session_timeout_s * 1000),
            ),
            on_fatal=lambda exc: die("responder", exc),
        )
        await self.responder.start()

    async def on_stop(self) -> None:
        if self.responder:
            await self.responder.stop()
