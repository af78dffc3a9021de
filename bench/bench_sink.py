"""Sink throughput vs a raw clickhouse-connect bulk insert of the same row shapes, same run.

    python bench/bench_sink.py [--requests 10000] [--repeat 3] [--batch 5000] [--no-kafka]

Phases (one chDB directory, all tables with their materialized views, as in production):
  raw_insert  pre-mapped rows, client.insert per table in batches: the floor for any sink
  sink_add_flush  ClickHouseSink.add(span) + flush() per batch: mapping, redaction, dedup token
  sink_kafka  end to end: spans already in a Kafka topic -> run_sink -> rows committed (decode too)
Each request is 4 spans -> 6 rows (4 otel_traces, 1 llm_calls, 1 decisions). Every phase uses
its own seed so ClickHouse's block dedup cannot skip work. Prints one JSON line per run and a
summary line with the sink/raw ratio (median of the repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sinks import rows as R
from sinks.clickhouse import DATABASE, TABLES, ClickHouseSink, connect, migrate
from sinks.consumer import SinkStats, run_sink
from sinks.samples import request_traces
from streams.events.codecs import get_codec
from streams.events.records import Span
from streams.telemetry.redaction import Redactor


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def table_rows(spans: list[Span]) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {t: [] for t in TABLES}
    for s in spans:
        out["otel_traces"].append(R.otel_traces_row(s))
        if (call := R.llm_call_row(s)) is not None:
            out["llm_calls"].append(call)
        if (decision := R.decision_row(s)) is not None:
            out["decisions"].append(decision)
    return out


def raw_insert(client: Any, spans: list[Span], batch: int) -> float:
    """Rows mapped beforehand (not timed); times only the inserts, batch by batch."""
    chunks = [table_rows(spans[i : i + batch]) for i in range(0, len(spans), batch)]
    started = time.perf_counter()
    for chunk in chunks:
        for table, columns in TABLES.items():
            if chunk[table]:
                client.insert(f"{DATABASE}.{table}", chunk[table], column_names=columns)
    return time.perf_counter() - started


def sink_add_flush(client: Any, spans: list[Span], batch: int) -> float:
    sink = ClickHouseSink(client, batch_max_rows=batch, redact=Redactor().redact)
    started = time.perf_counter()
    for i in range(0, len(spans), batch):
        for span in spans[i : i + batch]:
            sink.add(span)
        sink.flush({("bench", 0): i + batch}, group="bench")
    return time.perf_counter() - started


async def sink_kafka(client: Any, bootstrap: str, spans: list[Span], batch: int) -> float:
    topic, group = f"bench-sink-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    codec = get_codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    futures = [await producer.send(topic, codec.encode(s), key=s.trace_id.encode()) for s in spans]
    await asyncio.gather(*futures)
    await producer.stop()
    stop, stats = asyncio.Event(), SinkStats()
    started = time.perf_counter()
    task = asyncio.create_task(
        run_sink(
            bootstrap,
            topic,
            group,
            "chdb://unused",
            stop,
            client=client,
            ddl_dir=None,
            serve_queries=False,
            batch_max_rows=batch,
            batch_max_age_s=0.5,
            stats=stats,
            redact=Redactor().redact,
        )
    )
    while stats.rows.get("otel_traces", 0) < len(spans):
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000, help="spans per batch")
    ap.add_argument("--no-kafka", dest="kafka", action="store_false")
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    rows_per_request = 6
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        client = connect(f"chdb://{tmp}/chdb")
        migrate(client)
        results: dict[str, list[float]] = {"raw_insert": [], "sink_add_flush": [], "sink_kafka": []}
        for rep in range(args.repeat):
            phases: list[tuple[str, Any]] = [
                ("raw_insert", lambda s: raw_insert(client, s, args.batch)),
                ("sink_add_flush", lambda s: sink_add_flush(client, s, args.batch)),
            ]
            if args.kafka:
                phases.append(
                    (
                        "sink_kafka",
                        lambda s: asyncio.run(sink_kafka(client, bootstrap, s, args.batch)),
                    )
                )
            for name, run in phases:
                spans = request_traces(args.requests, seed=f"{name}-{rep}-{uuid.uuid4().hex[:6]}")
                seconds = run(spans)
                rows = args.requests * rows_per_request
                results[name].append(rows / seconds)
                emit(
                    bench="sink",
                    phase=name,
                    rep=rep,
                    requests=args.requests,
                    spans=len(spans),
                    rows=rows,
                    batch=args.batch,
                    seconds=round(seconds, 4),
                    rows_per_s=round(rows / seconds),
                    spans_per_s=round(len(spans) / seconds),
                )
        client.close()
    med = {k: statistics.median(v) for k, v in results.items() if v}
    emit(
        bench="sink",
        phase="summary",
        cpus=os.cpu_count(),
        **{f"{k}_rows_per_s": round(v) for k, v in med.items()},
        sink_vs_raw=round(med["sink_add_flush"] / med["raw_insert"], 3),
        **(
            {"kafka_vs_raw": round(med["sink_kafka"] / med["raw_insert"], 3)}
            if "sink_kafka" in med
            else {}
        ),
    )


if __name__ == "__main__":
    main()
