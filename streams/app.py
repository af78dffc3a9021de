"""The only faust.App: settings in, topics created explicitly before anything produces."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from streams.settings import Settings, get_settings
from streams.topics import ensure_topics


class AgentStreamApp(faust.App):
    """faust.App that knows its settings and creates its topics before it starts."""

    agentstream_settings: Settings

    async def on_first_start(self) -> None:
        # Topics first, with their partition counts: auto-created topics break co-partitioning.
        await ensure_topics(self.agentstream_settings)
        await super().on_first_start()

    async def on_start(self) -> None:
        await super().on_start()
        _make_flush_strict(self.producer)


def _make_flush_strict(producer: Any) -> None:
    """Faust commits offsets right after `producer.flush()`, whose buffer drain gives up after
    0.1 s without progress (PITFALLS): table writes could still be unsent when the offset of the
    event that caused them is committed. This flush drains the buffer completely, then waits for
    aiokafka to deliver everything it holds."""
    buffer = producer.buffer
    original = buffer.flush

    async def drain() -> None:
        while buffer.size:
            await original()
            if buffer.size:
                await asyncio.sleep(0.01)

    buffer.flush = drain


def create_app(settings: Settings) -> AgentStreamApp:
    (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    app = AgentStreamApp(
        settings.app_id,
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_s * 3),
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        web_enabled=False,
        web_bind="127.0.0.1",  # only if a worker is started `--with-web`
        datadir=str(settings.data_dir / "worker"),
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.agentstream_settings = settings
    return app


app = create_app(get_settings())
