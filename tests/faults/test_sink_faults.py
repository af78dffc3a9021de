"""The sink SIGKILLed twice and ClickHouse unreachable for 60 s under load: every span and every
decision lands exactly once, and the per-minute rollups equal a recount from the raw tables."""

from __future__ import annotations

import asyncio
import time

import pytest

from sinks.clickhouse import connect
from streams.events.codecs import get_codec
from streams.kafka.processes import WorkerProcess
from streams.telemetry import span_batches
from tests.faults.load import Load, count, report, settle, stored_spans
from tests.harness import Pipeline

pytestmark = pytest.mark.fault


async def test_sink_killed_twice_and_clickhouse_away_for_60s(pipeline: Pipeline) -> None:
    outage = pipeline.tmp / "clickhouse-outage"
    url = f"chdb://{pipeline.tmp / 'clickhouse'}"
    pipeline.env_extra.update(
        {
            "AGENTSTREAM_SIM_LATENCY_MS": "50",
            "CLICKHOUSE_URL": url,
            "AGENTSTREAM_CLICKHOUSE_OUTAGE_FILE": str(outage),
        }
    )
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)

    def start_sink(n: int) -> WorkerProcess:
        proc = WorkerProcess.spawn_sink(pipeline.env(), pipeline.tmp / f"sink-{n}.log")
        pipeline.workers.append(proc)  # stopped by the fixture whatever happens
        return proc

    sink = start_sink(0)
    await pipeline.wait_ready(sink)
    load = Load()
    producing = asyncio.create_task(load.publish(pipeline, 1500, sessions=100, rate=15.0))
    for n in (1, 2):  # killed twice mid-stream, restarted at once
        await asyncio.sleep(8.0)
        sink.kill()
        sink = start_sink(n)
        await pipeline.wait_ready(sink)
    outage.touch()
    await asyncio.sleep(60.0)
    outage.unlink()
    back = time.monotonic()
    await producing
    responses, _ = await settle(pipeline, set(load.sent), timeout_s=180)
    figures = count(responses, set(load.sent))

    codec = get_codec()
    spans = [s for m in await pipeline.read_topic("traces") for s in span_batches.unpack(m.value, codec)]
    span_ids = {s.span_id for s in spans}
    decided = {
        s.attributes["agentstream.request.id"]
        for s in spans
        if s.attributes.get("agentstream.verdict") and s.attributes.get("agentstream.request.id")
    }
    # The sink has written everything once its row count stops moving at the topic's total.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if await asyncio.to_thread(stored_spans, url) >= len(span_ids):
            break
        await asyncio.sleep(2.0)
    sink.stop()
    client = connect(url)
    try:
        q = lambda sql: int(client.command(sql))  # noqa: E731
        figures.update(
            spans_on_topic=len(spans),
            distinct_spans=len(span_ids),
            otel_rows=q("SELECT count() FROM agentstream.otel_traces"),
            otel_distinct=q("SELECT uniqExact(SpanId) FROM agentstream.otel_traces"),
            decisions_expected=len(decided),
            decision_rows=q("SELECT count() FROM agentstream.decisions"),
            decisions_rollup=q("SELECT sum(requests) FROM agentstream.decisions_1m"),
            llm_rows=q("SELECT count() FROM agentstream.llm_calls"),
            llm_rollup=q("SELECT sum(calls) FROM agentstream.llm_calls_1m"),
            drain_after_outage_s=round(time.monotonic() - back, 1),
        )
    finally:
        client.close()
    report("sink killed twice + ClickHouse away 60 s", figures)

    assert figures["lost"] == 0 and figures["doubled"] == 0, figures
    assert figures["otel_rows"] == figures["otel_distinct"] == figures["distinct_spans"], figures
    assert figures["decision_rows"] == figures["decisions_expected"] == len(load.sent), figures
    assert figures["decisions_rollup"] == figures["decision_rows"], figures
    assert figures["llm_rollup"] == figures["llm_rows"], figures
