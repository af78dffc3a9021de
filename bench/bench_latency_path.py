"""Where a lone request's time goes: end-to-end latency of requests sent one at a time, each
stage's start and duration from its spans, and the same lone record through the baseline's
three plain aiokafka hops, in the same run.

    python bench/bench_latency_path.py --requests 40

One worker in a fresh namespace, simulator at 0 ms, tracing on; requests one at a time, 100 ms
apart, over 20 sessions, after 10 unmeasured ones. A stage's start is measured from the
request's `created_ms` (the client's clock: same machine). The spans show how much of the
latency is the stages' own work and how much the hops between them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pipeline import consumer_at_end, requests
from streams.config.settings import Settings
from streams.events.codecs import get_codec
from streams.events.records import Request, Response
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topics import REQUESTS, RESPONSES, TRACES, ensure_topics
from streams.telemetry import attributes as attr
from streams.telemetry import span_batches

WARMUP = 10


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "latency_path", **fields}), flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 1)


async def one_at_a_time(bootstrap: str, in_topic: str, out_topic: str, isolation: str, reqs: list[Request], cls: type) -> tuple[list[float], dict[str, float]]:
    """Sends each request once the previous one came out; latencies (ms) after the warm-up."""
    codec = get_codec()
    consumer = await consumer_at_end(bootstrap, out_topic, isolation)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    latencies, sent_at = [], {}
    try:
        for i, req in enumerate(reqs):
            started = time.time()
            req.created_ms = int(started * 1000)
            await producer.send(in_topic, codec.encode(req), key=req.session_id.encode())
            waiting = True
            while waiting:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    waiting = waiting and all(codec.decode(m.value, cls).request_id != req.request_id for m in records)
                if time.time() - started > 60:
                    raise TimeoutError(f"request {req.request_id} did not come out in 60 s")
            if i >= WARMUP:
                latencies.append((time.time() - started) * 1000)
                sent_at[req.request_id] = started
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
        await consumer.stop()
    return latencies, sent_at


async def stage_timeline(bootstrap: str, topic: str, sent_at: dict[str, float]) -> dict[str, list[tuple[float, float]]]:
    """(start after the request was sent, duration) in ms of every span, by span name."""
    codec = get_codec()
    consumer = await consumer_at_end(bootstrap, topic, "read_uncommitted")
    for tp in consumer.assignment():
        consumer.seek(tp, 0)
    rows: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    try:
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for message in records:
                    for span in span_batches.unpack(message.value, codec):
                        started = sent_at.get(span.attributes.get(attr.AGENTSTREAM_REQUEST_ID, ""))
                        if started is None:
                            continue
                        name = span.name.replace(topic.rsplit(".", 2)[0], "")  # drop the namespace
                        rows[name].append((
                            span.start_time_unix_nano / 1e6 - started * 1000,
                            (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
                        ))
    finally:
        await consumer.stop()
    return rows


async def pipeline(bootstrap: str, n: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-path-"))
    settings = Settings(kafka_bootstrap_servers=bootstrap, namespace=f"-bl{uuid.uuid4().hex[:8]}", data_dir=tmp)
    await ensure_topics(settings)
    env = environment_for(settings, AGENTSTREAM_SIM_LATENCY_MS="0", AGENTSTREAM_TRACING="true")
    worker = WorkerProcess.spawn(env, tmp / "worker.log")
    try:
        await worker.wait_ready()
        latencies, sent_at = await one_at_a_time(
            bootstrap, settings.topic(REQUESTS), settings.topic(RESPONSES), "read_committed",
            requests(n + WARMUP, 20), Response,
        )
        emit(metric="lone_request_ms", path="pipeline", requests=len(latencies),
             p50=pct(latencies, 50), p90=pct(latencies, 90), min=pct(latencies, 0))
        await asyncio.sleep(1.0)  # the last spans' export
        rows = await stage_timeline(bootstrap, settings.topic(TRACES), sent_at)
        for name, values in sorted(rows.items(), key=lambda kv: statistics.median(v[0] for v in kv[1])):
            emit(metric="span", name=name, spans=len(values),
                 start_p50_ms=round(statistics.median(v[0] for v in values), 1),
                 duration_p50_ms=round(statistics.median(v[1] for v in values), 2))
        return statistics.median(latencies)
    finally:
        worker.stop()


async def raw_hops_lone(bootstrap: str, n: int) -> float:
    """The same lone records through the three plain aiokafka hops of `bench_pipeline.py`."""
    prefix = f"bench-hops-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.{i}", Settings().partitions, 1) for i in range(4)])
    finally:
        await admin.close()
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("bench_pipeline.py")), "--relay", prefix],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
        latencies, _ = await one_at_a_time(
            bootstrap, f"{prefix}.0", f"{prefix}.3", "read_uncommitted", requests(n + WARMUP, 20), Request
        )
        emit(metric="lone_request_ms", path="three_plain_hops", requests=len(latencies),
             p50=pct(latencies, 50), p90=pct(latencies, 90), min=pct(latencies, 0))
        return statistics.median(latencies)
    finally:
        child.terminate()
        child.wait(30)


async def main(n: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    hops = await raw_hops_lone(bootstrap, n)
    ours = await pipeline(bootstrap, n)
    emit(metric="lone_request_p50_over_three_plain_hops", value=round(ours / hops, 2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    asyncio.run(main(parser.parse_args().requests))
