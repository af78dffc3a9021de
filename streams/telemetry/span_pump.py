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
        q = app.services.span_queue
        sent = 0
        while not q.empty():
            key, value = q.get_nowait()
            await stream_topics.traces.send(key=key, value=value)
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
