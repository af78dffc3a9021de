"""Moves finished spans from the exporter's queue into `agentstream.traces.v1`.

The batch span processor exports on its own thread; this service is the event-loop side of that
hand-off, publishing through the worker's producer.
"""

from __future__ import annotations

import asyncio

import mode

from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import log


@app.service
class SpanPump(mode.Service):
    async def _drain(self) -> int:
        # Spans are encoded bytes already and need no Faust channel machinery (callbacks,
        # futures per message): they go straight to the producer, a few per request.
        q = app.services.span_queue
        topic = stream_topics.traces.get_topic_name()
        sent = 0
        while not q.empty():
            key, value = q.get_nowait()
            delivered = await app.producer.send(topic, key, value, None, None, None)
            delivered.add_done_callback(_log_failure)  # type: ignore[attr-defined]
            sent += 1
        return sent

    @mode.Service.task
    async def _pump(self) -> None:
        while not self.should_stop:
            if not await self._drain():
                await self.sleep(0.05)

    async def on_stop(self) -> None:
        provider = app.services.tracer_provider
        if provider is not None:
            # shutdown() flushes the batch processor on this worker thread, never on the loop.
            await asyncio.to_thread(provider.shutdown)
        try:
            await self._drain()
            await app.producer.flush()
        except Exception as exc:  # stopping anyway; say what was lost
            log.warning("spans not published at shutdown: %r", exc)


def _log_failure(delivered: asyncio.Future[object]) -> None:
    if not delivered.cancelled() and delivered.exception() is not None:
        log.warning("span not published: %r", delivered.exception())
