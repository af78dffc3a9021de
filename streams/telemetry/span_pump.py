"""Moves finished spans from the exporter's queue into `agentstream.traces.v1`.

The batch span processor exports on its own thread; this service is the event-loop side of that
hand-off, publishing through the worker's producer. It also reads the topic's partition count
once, so that the exporter can batch spans per partition (`span_batches`).
"""

from __future__ import annotations

import asyncio

import mode

from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import log
from streams.kafka.topics import TRACES, partition_count

# Reading the partition count is retried this often, this far apart, before the exporter is left
# batching per session (which loses nothing; it only sends more messages).
PARTITION_COUNT_TRIES = 5
PARTITION_COUNT_RETRY_S = 2.0


@app.service
class SpanPump(mode.Service):
    async def _drain(self) -> int:
        q = app.services.span_queue
        sent = 0
        while not q.empty():
            key, value, partition = q.get_nowait()
            await stream_topics.traces.send(key=key, value=value, partition=partition)
            sent += 1
        return sent

    @mode.Service.task
    async def _pump(self) -> None:
        while not self.should_stop:
            if not await self._drain():
                await self.sleep(0.05)

    @mode.Service.task
    async def _learn_partitions(self) -> None:
        settings = app.agentstream_settings
        if not settings.tracing:
            return
        for attempt in range(1, PARTITION_COUNT_TRIES + 1):
            try:
                app.services.span_exporter.partitions = await partition_count(settings, settings.topic(TRACES))
                return
            except Exception as exc:  # the cluster may still be forming: spans stay per session
                log.warning("traces partition count not read (try %d): %r", attempt, exc)
            await self.sleep(PARTITION_COUNT_RETRY_S)

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
