"""Pipeline throughput against what Kafka itself allows here, measured in the same run.

    python bench/bench_pipeline.py --requests 3000 --sessions 500   # then every bench_scale.py figure
    python bench/bench_pipeline.py --session-age-only               # aged against new sessions

Baseline: three plain aiokafka relay hops in one separate process (the pipeline's worker is one
process too), each hop decoding the Avro request and encoding it again, same payloads, same
partition count. Pipeline: one worker, simulator at 0 ms (every millisecond is ours), tracing on
and off (two workers side by side, driven in alternating rounds). Both are fed by an independent load client in this process: a plain aiokafka producer
writing Avro-encoded requests, and a `read_committed` consumer on the responses topic.
The same three hops as Faust agents (`bench_faust_hops.py`) show what Faust's own per-event
path allows. Prints one JSON line per figure, then the ratios; `bench/README.md` keeps the
latest table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.config.settings import Settings
from streams.events.codecs import get_codec
from streams.events.records import Request, Response, now_ms
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topics import REQUESTS, RESPONSES, ensure_topics

TEXTS = ["Where is my order 1234?", "Refund $5 for order 1234", "Is the dashboard down?", "How do I reset my password?"]


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "pipeline", **fields}), flush=True)


def requests(n: int, sessions: int, prefix: str = "") -> list[Request]:
    return [
        Request(
            request_id=uuid.uuid4().hex,
            session_id=f"{prefix}s{i % sessions}",
            user_id=f"{prefix}u{i % sessions}",
            text=TEXTS[i % len(TEXTS)],
            context=[],
            metadata={},
            created_ms=now_ms(),
        )
        for i in range(n)
    ]


async def produce(bootstrap: str, topic: str, reqs: list[Request]) -> None:
    codec = get_codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, codec.encode(r), key=r.session_id.encode()) for r in reqs
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consumer_at_end(bootstrap: str, topic: str, isolation: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation
    )
    await consumer.start()
    await consumer._client.force_metadata_update()
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    for tp, offset in (await consumer.end_offsets(tps)).items():
        consumer.seek(tp, offset)
    return consumer


async def drive(
    bootstrap: str, in_topic: str, out_topic: str, isolation: str, n: int, sessions: int, prefix: str = ""
) -> float:
    """Sends n requests and returns records/s until every request id came out the other end."""
    reqs = requests(n, sessions, prefix)
    wanted = {r.request_id for r in reqs}
    consumer = await consumer_at_end(bootstrap, out_topic, isolation)
    codec = get_codec()
    try:
        started = time.perf_counter()
        sending = asyncio.create_task(produce(bootstrap, in_topic, reqs))
        while wanted:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for msg in records:
                    wanted.discard(_request_id(codec, msg.value))
            if time.perf_counter() - started > 900:
                raise TimeoutError(f"{len(wanted)} of {n} never came out of {out_topic}")
        elapsed = time.perf_counter() - started
        await sending
        return n / elapsed
    finally:
        await consumer.stop()


def _request_id(codec: object, value: bytes) -> str:
    for cls in (Response, Request):
        try:
            return codec.decode(value, cls).request_id  # type: ignore[attr-defined]
        except Exception:
            continue
    return ""


# -- the baseline: three relay hops in one process ----------------------------------------------


async def relay_main(bootstrap: str, prefix: str) -> None:
    """Run in a child process: hop i consumes `{prefix}.{i}`, decodes, encodes, produces to i+1."""
    codec = get_codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()

    async def hop(i: int) -> None:
        consumer = AIOKafkaConsumer(
            f"{prefix}.{i}",
            bootstrap_servers=bootstrap,
            group_id=f"{prefix}-hop{i}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for msg in records:
                    req = codec.decode(msg.value, Request)
                    await producer.send(f"{prefix}.{i + 1}", codec.encode(req), key=msg.key)

    print("relays ready", flush=True)
    await asyncio.gather(*(hop(i) for i in range(3)))


async def raw_hops(bootstrap: str, partitions: int, n: int, sessions: int) -> float:
    prefix = f"bench-hops-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{prefix}.{i}", partitions, 1) for i in range(4)]
        )
    finally:
        await admin.close()
    child = subprocess.Popen(
        [sys.executable, __file__, "--relay", prefix],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
        # Warm up: every hop has joined its group and read its first record.
        await drive(bootstrap, f"{prefix}.0", f"{prefix}.3", "read_uncommitted", 50, 50)
        return await drive(bootstrap, f"{prefix}.0", f"{prefix}.3", "read_uncommitted", n, sessions)
    finally:
        child.terminate()
        child.wait(30)


# -- the pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchWorker:
    """A running worker: `drive`'s first four arguments for it, and its process id."""

    args: tuple[str, str, str, str]
    pid: int

    def cpu_s(self) -> float:
        """User + system CPU seconds the worker process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def pipeline_worker(
    bootstrap: str, tracing: bool, tmp: Path, label: str = ""
) -> AsyncIterator[BenchWorker]:
    """A started, warmed-up worker in its own namespace."""
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        namespace=f"-bp{uuid.uuid4().hex[:8]}",
        data_dir=tmp / (label or f"tracing-{tracing}"),
    )
    await ensure_topics(settings)
    env = environment_for(
        settings,
        AGENTSTREAM_SIM_LATENCY_MS="0",
        AGENTSTREAM_TRACING="true" if tracing else "false",
    )
    worker = WorkerProcess.spawn(env, settings.data_dir / "worker.log")
    try:
        await worker.wait_ready()
        args = (bootstrap, settings.topic(REQUESTS), settings.topic(RESPONSES), "read_committed")
        await drive(*args, 50, 50)
        yield BenchWorker(args, worker.proc.pid)
    finally:
        worker.stop()


async def tracing_on_and_off(
    bootstrap: str, n: int, sessions: int, tmp: Path, rounds: int = 3
) -> tuple[float, float, float, float]:
    """Requests/s with tracing on and off, from two workers started side by side and driven in
    alternating rounds (on, off, then off, on, ...) of n / rounds requests each: the machine's
    load drifts over minutes, and two runs one after the other measured it as much as tracing.
    Also each worker's CPU ms per request over its rounds (its process's user + system time):
    on a shared machine the CPU a request costs moves less with the neighbours than the rate
    does. Returns (on req/s, off req/s, on CPU ms/request, off CPU ms/request)."""
    chunk = max(n // rounds, 1)
    spent = {True: 0.0, False: 0.0}
    cpu = {True: 0.0, False: 0.0}
    async with pipeline_worker(bootstrap, True, tmp) as on, pipeline_worker(bootstrap, False, tmp) as off:
        for r in range(rounds):
            for tracing in (True, False) if r % 2 == 0 else (False, True):
                worker = on if tracing else off
                cpu_before = worker.cpu_s()
                rate = await drive(*worker.args, chunk, sessions)
                await asyncio.sleep(0.3)  # the last answers' spans are exported within 200 ms
                cpu_ms = (worker.cpu_s() - cpu_before) * 1000 / chunk
                emit(metric="tracing_round_req_per_s", round=r, tracing=tracing, value=round(rate, 1),
                     cpu_ms_per_request=round(cpu_ms, 2))
                spent[tracing] += chunk / rate
                cpu[tracing] += cpu_ms / rounds
    return chunk * rounds / spent[True], chunk * rounds / spent[False], cpu[True], cpu[False]


async def session_age(bootstrap: str, tmp: Path, sessions: int = 100, chunk: int = 500, rounds: int = 4) -> tuple[float, float]:
    """Requests/s on sessions that have finished 21 tasks each (past the 20 a session keeps a
    line for) against sessions that are new, in one worker, alternating rounds of `chunk`
    requests over `sessions` sessions each: the same concurrency, only the sessions' age
    differs. Every step of a task writes its session value whole, so what a session keeps of
    its past is paid again at every step."""
    spent = {"aged": 0.0, "new": 0.0}
    async with pipeline_worker(bootstrap, True, tmp, label="session-age") as worker:
        args = worker.args
        await drive(*args, sessions * 21, sessions, "aged-")
        for r in range(rounds):
            for kind in ("aged", "new") if r % 2 == 0 else ("new", "aged"):
                prefix = "aged-" if kind == "aged" else f"new{r}-"
                rate = await drive(*args, chunk, sessions, prefix)
                emit(metric="session_age_round_req_per_s", round=r, sessions_kind=kind, value=round(rate, 1))
                spent[kind] += chunk / rate
    return chunk * rounds / spent["aged"], chunk * rounds / spent["new"]


async def session_age_figures(bootstrap: str, tmp: Path) -> None:
    aged, young = await session_age(bootstrap, tmp)
    emit(metric="aged_sessions_req_per_s", value=round(aged, 1), finished_tasks_per_session=21)
    emit(metric="new_sessions_req_per_s", value=round(young, 1))
    emit(metric="aged_over_new_sessions", value=round(aged / young, 3))


async def main(n: int, sessions: int, scale: bool) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    partitions = Settings().partitions
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    meta = {"requests": n, "sessions": sessions, "partitions": partitions}
    hops = await raw_hops(bootstrap, partitions, n, sessions)
    emit(metric="raw_three_hops_records_per_s", value=round(hops, 1), **meta)
    # Where the limit lies: the same three hops as Faust agents (bench_faust_hops.py).
    from bench.bench_faust_hops import faust_hops

    faust = await faust_hops(bootstrap, partitions, n, sessions, table=False)
    emit(metric="faust_three_hops_records_per_s", value=round(faust, 1), over_raw_hops=round(faust / hops, 3), **meta)
    on, off, cpu_on, cpu_off = await tracing_on_and_off(bootstrap, n, sessions, tmp)
    emit(metric="pipeline_req_per_s_tracing_on", value=round(on, 1), **meta)
    emit(metric="pipeline_req_per_s_tracing_off", value=round(off, 1), **meta)
    emit(metric="pipeline_over_raw_hops", value=round(on / hops, 4), target=0.25)
    emit(metric="pipeline_over_faust_hops", value=round(on / faust, 4))
    emit(metric="tracing_on_over_off", value=round(on / off, 3), target=0.90)
    emit(metric="worker_cpu_ms_per_request_tracing_on", value=round(cpu_on, 2))
    emit(metric="worker_cpu_ms_per_request_tracing_off", value=round(cpu_off, 2))
    emit(metric="tracing_cpu_off_over_on", value=round(cpu_off / cpu_on, 3),
         meaning="the on/off throughput a CPU-bound worker would show")
    await session_age_figures(bootstrap, tmp)
    if scale:
        from bench import bench_scale  # fan-out, latency, 1 vs 2 workers, restart and memory

        await bench_scale.main(None, bench_scale.parser().parse_args([]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--relay", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-scale", action="store_true", help="throughput only, without bench_scale.py's figures"
    )
    parser.add_argument(
        "--session-age-only", action="store_true", help="only the aged against new sessions figure"
    )
    args = parser.parse_args()
    if args.relay:
        asyncio.run(relay_main(os.environ["KAFKA_BOOTSTRAP_SERVERS"], args.relay))
    elif args.session_age_only:
        asyncio.run(
            session_age_figures(
                os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                Path(tempfile.mkdtemp(prefix="bench-pipeline-")),
            )
        )
    else:
        asyncio.run(main(args.requests, args.sessions, not args.no_scale))
