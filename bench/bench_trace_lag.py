"""Trace lag: span end -> span on the traces topic -> row visible in ClickHouse, at a steady rate.

    python bench/bench_trace_lag.py --rate 20 --seconds 20

A real worker and a real sink process (chDB) run; requests go out at a steady rate. A plain
consumer notes when each span reaches Kafka (the baseline, same run), and a poller notes when its
row becomes visible in `otel_traces` through the sink's query endpoint (every 100 ms, so the
ClickHouse figure is exact to about +0.1 s). Prints JSON lines with p50/p99 and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from sinks.analytics import run_query
from streams.client import AgentStreamClient
from streams.config.settings import Settings
from streams.events.codecs import get_codec
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topics import ensure_topics
from streams.telemetry import span_batches


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main(rate: float, seconds: float) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    tmp = Path(tempfile.mkdtemp(prefix="bench-lag-"))
    settings = Settings(
        kafka_bootstrap_servers=bootstrap, namespace=f"-bl{uuid.uuid4().hex[:8]}", data_dir=tmp
    )
    url = f"chdb://{tmp / 'clickhouse'}"
    await ensure_topics(settings)
    env = environment_for(settings, AGENTSTREAM_SIM_LATENCY_MS="100", CLICKHOUSE_URL=url)
    worker = WorkerProcess.spawn(env, tmp / "worker.log")
    sink = WorkerProcess.spawn_sink(env, tmp / "sink.log")
    span_end: dict[str, float] = {}
    on_kafka: dict[str, float] = {}
    in_clickhouse: dict[str, float] = {}
    done = asyncio.Event()

    async def watch_kafka() -> None:
        consumer = AIOKafkaConsumer(
            settings.topic("traces"), bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while not done.is_set():
                for batch in (await consumer.getmany(timeout_ms=50)).values():
                    now = time.time()
                    for m in batch:
                        for span in span_batches.unpack(m.value, get_codec()):
                            span_end[span.span_id] = span.end_time_unix_nano / 1e9
                            on_kafka[span.span_id] = now
        finally:
            await consumer.stop()

    async def watch_clickhouse() -> None:
        while not done.is_set():
            _, rows = await asyncio.to_thread(
                run_query, "SELECT SpanId FROM agentstream.otel_traces", clickhouse_url=url
            )
            now = time.time()
            for (sid,) in rows:
                in_clickhouse.setdefault(sid, now)
            await asyncio.sleep(0.1)

    try:
        await worker.wait_ready()
        await sink.wait_ready()
        watchers = [asyncio.create_task(watch_kafka()), asyncio.create_task(watch_clickhouse())]
        async with AgentStreamClient.from_settings(settings) as client:
            ids = []
            start = time.monotonic()
            n = int(rate * seconds)
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                text = "Refund $5 for order 1234" if i % 3 == 0 else "Where is my order 1234?"
                ids.append((await client.send(text, session_id=f"l{i % 50}", user_id=f"u{i % 50}")).request_id)
            for rid in ids:
                await client.response(rid, 120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not span_end or set(span_end) - set(in_clickhouse)):
            await asyncio.sleep(0.5)
        done.set()
        await asyncio.gather(*watchers)
    finally:
        worker.stop()
        sink.stop()
    seen = [s for s in span_end if s in in_clickhouse]
    kafka_lag = [max(0.0, on_kafka[s] - span_end[s]) * 1000 for s in seen]
    ch_lag = [max(0.0, in_clickhouse[s] - span_end[s]) * 1000 for s in seen]
    base = {"bench": "trace_lag", "rate_per_s": rate, "spans": len(seen)}
    for name, values in (("span_end_to_kafka_ms", kafka_lag), ("span_end_to_clickhouse_ms", ch_lag)):
        print(json.dumps({**base, "metric": name, "p50": round(pct(values, 50), 1), "p99": round(pct(values, 99), 1)}))
    print(
        json.dumps(
            {**base, "metric": "clickhouse_over_kafka_p50", "value": round(pct(ch_lag, 50) / max(pct(kafka_lag, 50), 1e-3), 2)}
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds))
