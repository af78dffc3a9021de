"""The broker stops for 30 s mid-stream while producers keep publishing, then comes back: the
worker recovers by itself and every request is answered exactly once.

This drill runs its own broker (a private data dir and port), so stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sinks.clickhouse import connect
from streams.events.codecs import get_codec
from streams.kafka import launcher
from streams.kafka.processes import WorkerProcess
from streams.telemetry import span_batches
from tests.faults.load import Load, count, report, settle, stored_spans, where_lost
from tests.harness import Pipeline

pytestmark = pytest.mark.fault


@pytest.fixture
def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    port = launcher.free_port()
    data = tmp_path / "kafka"
    bootstrap = launcher.up(port=port, data_dir=data, log=lambda _m: None)
    yield launcher, port, data, bootstrap
    launcher.down(data_dir=data, log=lambda _m: None)


async def test_broker_down_for_30s_mid_stream(own_broker, tmp_path: Path) -> None:
    launcher, port, data, bootstrap = own_broker
    pipeline = Pipeline(bootstrap, tmp_path / "pipeline")
    url = f"chdb://{pipeline.tmp / 'clickhouse'}"
    pipeline.env_extra.update({"AGENTSTREAM_SIM_LATENCY_MS": "100", "CLICKHOUSE_URL": url})
    await pipeline.create_topics()
    try:
        worker = pipeline.start_worker()
        await pipeline.wait_ready(worker)
        sink = WorkerProcess.spawn_sink(pipeline.env(), pipeline.tmp / "sink.log")
        pipeline.workers.append(sink)
        await pipeline.wait_ready(sink)
        load = Load()
        producing = asyncio.create_task(
            load.publish(
                pipeline, 900, sessions=60, rate=15.0, tool_every=4, request_timeout_ms=180_000
            )
        )
        await asyncio.sleep(10.0)
        await asyncio.to_thread(launcher.down, data, 60, lambda _m: None)
        stopped = time.monotonic()
        await asyncio.sleep(30.0)
        await asyncio.to_thread(launcher.up, port, data, 120, lambda _m: None)
        back = time.monotonic()
        await producing
        responses, took = await settle(pipeline, set(load.sent), timeout_s=240)
        figures = count(responses, set(load.sent))
        figures["broker_down_s"] = round(back - stopped, 1)
        figures["worker_restarts"] = 0 if worker.alive else 1
        figures["sink_restarts"] = 0 if sink.alive else 1
        figures["recovery_s"] = round(took, 1)
        done = pipeline.ledger()
        refunds = [e["request_id"] for e in done if e["tool"] == "issue_refund"]
        figures["refunds_doubled"] = len(refunds) - len(set(refunds))
        figures["refunds_missing"] = len(load.refunds - set(refunds))
        figures.update(
            await where_lost(
                pipeline, set(load.sent) - {r.request_id for r in responses}, load.sent
            )
        )
        # The sink rode out the outage too: every span that reached the topic is stored, once.
        distinct_spans = len(
            {
                s.span_id
                for m in await pipeline.read_topic("traces")
                for s in span_batches.unpack(m.value, get_codec())
            }
        )
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and await asyncio.to_thread(stored_spans, url) < distinct_spans
        ):
            await asyncio.sleep(2.0)
        sink.stop()
        client = connect(url)
        try:
            figures["spans_on_topic"] = distinct_spans
            figures["span_rows"] = int(
                client.command("SELECT count() FROM agentstream.otel_traces")
            )
            figures["span_rows_distinct"] = int(
                client.command("SELECT uniqExact(SpanId) FROM agentstream.otel_traces")
            )
        finally:
            client.close()
        report("broker stopped 30 s", figures)
        assert worker.alive, "the worker rides out the outage:\n" + worker.log()[-6000:]
        tail = "\n--- worker log (tail) ---\n" + worker.log()[-6000:]
        assert figures["lost"] == 0 and figures["doubled"] == 0 and figures["unexpected"] == 0, (
            f"{figures}{tail}"
        )
        assert figures["refunds_doubled"] == 0 and figures["refunds_missing"] == 0, figures
        assert figures["span_rows"] == figures["span_rows_distinct"] == distinct_spans, figures
    finally:
        pipeline.stop_all()
