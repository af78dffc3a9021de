"""The figures of the pipeline beyond plain throughput, each against its baseline in the same run.

    python bench/bench_scale.py                 # all of them (about 10 minutes here)
    python bench/bench_scale.py --only fanout   # one of fanout, latency, workers, restart, rebuild

- fanout: 1,000 sessions send one request each while every LLM call takes 2 s (no jitter). The
  baseline is one request alone through the same worker (its chain of LLM calls, sequential); the
  ratio is the wall time of the 1,000 over that (target <= 1.25).
- latency: requests paced at a fixed rate, latency from the load client's send to its receipt
  of the committed response; p50/p95/p99 at the target's 200 req/s and at 20 req/s.
- workers: throughput of 1 and 2 worker processes in one consumer group on this machine.
- restart: a namespace whose `sessions` changelog holds N sessions (100,000 by default; cloned
  from a real session value the pipeline wrote): a first worker start (a new machine: the whole
  changelog is read) until it answers, and its rebuild rate against a raw consume of the same
  changelog topic; then that worker is stopped (SIGTERM) and started again, and then SIGKILLed
  and started again (its local copy loaded, the changelog's tail read): start until it answers;
  worker RSS, and throughput with those sessions against an empty table.
- rebuild: the new-machine start alone with 1,000,000 sessions in the changelog (the issue's
  "1,000,000 records in <= 30 s"), its rebuild rate against a raw consume of the same topic.
Every figure is one JSON line (`bench: scale`), with its target where the issue gives one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pipeline import TEXTS, consumer_at_end, drive, produce, requests
from bench.bench_recovery import REBUILT
from streams.config.settings import Settings
from streams.events.codecs import get_codec
from streams.events.records import Request, Response, now_ms
from streams.kafka.partitioning import partition_for
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import REQUESTS, RESPONSES, ensure_topics

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
LOADED = re.compile(r"loaded (\d+) sessions of partition \d+ from the local copy")
STAMP = r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]"


def between(log: str, first: str, last: str) -> float | None:
    """Seconds from the first log line matching `first` to the first after it matching `last`."""
    a = re.search(STAMP + ".*" + first, log, re.M)
    b = re.search(STAMP + ".*" + last, log[a.end():] if a else "", re.M)
    if not (a and b):
        return None
    fmt = "%Y-%m-%d %H:%M:%S,%f"
    return (datetime.strptime(b[1], fmt) - datetime.strptime(a[1], fmt)).total_seconds()


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "scale", **fields}), flush=True)


class Namespace:
    """An isolated namespace with its topics and the workers started on it."""

    def __init__(self, tmp: Path, name: str, **env: str) -> None:
        self.settings = Settings(
            kafka_bootstrap_servers=BOOTSTRAP,
            namespace=f"-bs{uuid.uuid4().hex[:8]}",
            data_dir=tmp / name,
        )
        self.env = environment_for(self.settings, **{"AGENTSTREAM_SIM_LATENCY_MS": "0", **env})
        self.workers: list[WorkerProcess] = []
        self.spawned = 0  # log files are never reused: a restarted worker gets a new one

    @property
    def requests(self) -> str:
        return self.settings.topic(REQUESTS)

    @property
    def responses(self) -> str:
        return self.settings.topic(RESPONSES)

    @property
    def changelog(self) -> str:
        return f"{self.settings.app_id}-sessions-changelog"

    async def start(self, workers: int = 1) -> float:
        """Starts the workers; seconds until the last one is ready."""
        await ensure_topics(self.settings)
        started = time.monotonic()
        for _ in range(workers):
            self.workers.append(WorkerProcess.spawn(self.env, self.settings.data_dir / f"worker-{self.spawned}.log"))
            self.spawned += 1
        for w in self.workers[-workers:]:
            await w.wait_ready(600)
        return time.monotonic() - started

    async def throughput(self, n: int, sessions: int) -> float:
        return await drive(BOOTSTRAP, self.requests, self.responses, "read_committed", n, sessions)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def rss_mb(worker: WorkerProcess) -> float:
    for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def timed_round(ns: Namespace, reqs: list[Request], pace_per_s: float | None) -> list[float]:
    """Sends `reqs` (paced, or all at once) and returns each one's send-to-answer latency in ms."""
    codec = get_codec()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    consumer = await consumer_at_end(BOOTSTRAP, ns.responses, "read_committed")
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=0)
    await producer.start()

    async def send_all() -> None:
        start = time.perf_counter()
        for i, r in enumerate(reqs):
            if pace_per_s:
                delay = start + i / pace_per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent[r.request_id] = time.perf_counter()
            await producer.send(ns.requests, codec.encode(r), key=r.session_id.encode())
        await producer.flush()

    try:
        sending = asyncio.create_task(send_all())
        deadline = time.perf_counter() + 900
        while len(latencies) < len(reqs):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for msg in records:
                    resp = codec.decode(msg.value, Response)
                    at = sent.pop(resp.request_id, None)
                    if at is not None:
                        latencies.append((time.perf_counter() - at) * 1000)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(reqs) - len(latencies)} requests never answered")
        await sending
        return latencies
    finally:
        await producer.stop()
        await consumer.stop()


def one_per_session(n: int, text: str, prefix: str) -> list[Request]:
    return [
        Request(
            request_id=uuid.uuid4().hex,
            session_id=f"{prefix}{i}",
            user_id=f"u{prefix}{i}",
            text=text,
            context=[],
            metadata={},
            created_ms=now_ms(),
        )
        for i in range(n)
    ]


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


# -- the figures -------------------------------------------------------------------------------


async def fanout(tmp: Path, sessions: int, llm_ms: int) -> None:
    ns = Namespace(tmp, "fanout", AGENTSTREAM_SIM_LATENCY_MS=str(llm_ms), AGENTSTREAM_SIM_LATENCY_JITTER="0")
    try:
        await ns.start()
        text = TEXTS[0]
        await timed_round(ns, one_per_session(1, text, "warm"), None)
        [alone_ms] = await timed_round(ns, one_per_session(1, text, "alone"), None)
        started = time.perf_counter()
        await timed_round(ns, one_per_session(sessions, text, "f"), None)
        wall_s = time.perf_counter() - started
        emit(metric="fanout_wall_s", value=round(wall_s, 2), sessions=sessions, llm_call_ms=llm_ms,
             baseline_one_request_s=round(alone_ms / 1000, 2),
             ratio=round(wall_s / (alone_ms / 1000), 2), target_ratio=1.25)
    finally:
        ns.stop()


async def latency(tmp: Path, seconds: float) -> None:
    ns = Namespace(tmp, "latency")
    try:
        await ns.start()
        await ns.throughput(50, 50)  # warm
        for rate in (20, 200):
            reqs = requests(int(rate * seconds), 500)
            lat = await timed_round(ns, reqs, rate)
            emit(metric="latency_ms", rate_per_s=rate, requests=len(reqs), p50=pct(lat, 50),
                 p95=pct(lat, 95), p99=pct(lat, 99), target_p50=10 if rate == 200 else None,
                 target_p99=40 if rate == 200 else None)
    finally:
        ns.stop()


async def workers(tmp: Path, n: int, sessions: int) -> None:
    result = {}
    for count in (1, 2):
        ns = Namespace(tmp, f"workers-{count}")
        try:
            await ns.start(count)
            await ns.throughput(100, 100)  # warm: every worker has its partitions
            result[count] = await ns.throughput(n, sessions)
            emit(metric="throughput_req_per_s", workers=count, value=round(result[count], 1), requests=n)
        finally:
            ns.stop()
    emit(metric="two_workers_over_one", value=round(result[2] / result[1], 2))


async def prefill(ns: Namespace, template: bytes, template_id: str, sessions: int) -> int:
    """Writes `sessions` clones of a real session value to the changelog, as the table would."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks=1, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    needle = f'"{template_id}"'.encode()
    parts = ns.settings.partitions
    try:
        pending = []
        for i in range(sessions):
            sid = f"p{i}"
            value = template.replace(needle, f'"{sid}"'.encode())
            pending.append(await producer.send(ns.changelog, value, key=json.dumps(sid).encode(), partition=partition_for(sid, parts)))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sessions


async def seed_template(tmp: Path, name: str) -> Namespace:
    """A started worker that answered one request of session `template0` (a real session value,
    written by the pipeline); the caller stops it."""
    seed = Namespace(tmp, name)
    await seed.start()
    await produce(BOOTSTRAP, seed.requests, one_per_session(1, TEXTS[0], "template"))
    await seed.throughput(20, 20)
    return seed


async def template_of(seed: Namespace) -> bytes:
    values = {r.key: r.value for r in await read_all(BOOTSTRAP, seed.changelog)}
    return values[b'"template0"']  # the table's keys are JSON strings


async def new_machine(ns: Namespace, template: bytes, sessions: int) -> None:
    """Prefills `sessions` session values, then starts a worker with nothing local: the whole
    changelog is read (and the local copy written). Emits the start and rebuild figures."""
    await ensure_topics(ns.settings)
    started = time.perf_counter()
    await prefill(ns, template, "template0", sessions)
    emit(metric="prefill_s", value=round(time.perf_counter() - started, 1), sessions=sessions)

    started = time.perf_counter()
    raw = len(await read_all(BOOTSTRAP, ns.changelog))
    raw_s = time.perf_counter() - started
    ready_s = await ns.start()
    started = time.perf_counter()
    [first_ms] = await timed_round(ns, one_per_session(1, TEXTS[0], "first"), None)
    answered_s = ready_s + (time.perf_counter() - started)
    log = ns.workers[0].log()
    emit(metric="new_machine_start_until_answer_s", value=round(answered_s, 1), sessions=sessions,
         ready_s=round(ready_s, 1), first_answer_ms=round(first_ms, 1))
    m = REBUILT.search(log)
    # From joining the group (the partitions' changelog read starts right after) until
    # Faust's recovery is done: the local copy's catch-up read and Faust's own tail read.
    rebuild_s = between(log, rf"Joined group '{ns.settings.app_id}'", r"Recovery\]: Worker ready") or ready_s
    emit(metric="rebuild_over_raw_consume", value=round(raw_s / rebuild_s, 3),
         raw_consume_records_per_s=round(raw / raw_s), rebuild_records_per_s=round(raw / rebuild_s),
         rebuild_s=round(rebuild_s, 1), records=raw, keys_rebuilt=int(m.group(1)) if m else None,
         target=0.5, target_s_at_1m=30)


async def rebuild(tmp: Path, records: int) -> None:
    """The new-machine rebuild alone at `records` sessions (the issue's 1,000,000 in <= 30 s)."""
    seed = await seed_template(tmp, "rebuild-seed")
    try:
        template = await template_of(seed)
    finally:
        seed.stop()
    ns = Namespace(tmp, "rebuild")
    try:
        await new_machine(ns, template, records)
    finally:
        ns.stop()


async def restart(tmp: Path, sessions: int, n: int) -> None:
    seed = await seed_template(tmp, "restart-seed")
    try:
        empty_rss = rss_mb(seed.workers[0])
        empty_tput = await seed.throughput(n, 500)
        template = await template_of(seed)
    finally:
        seed.stop()
    emit(metric="session_value_bytes", value=len(template))

    ns = Namespace(tmp, "restart")
    try:
        await new_machine(ns, template, sessions)

        # The same worker stopped and started again on the same machine (a deploy: SIGTERM, then
        # SIGKILL as after a crash): its local copy of the changelog is loaded and only the tail
        # is read. After a SIGKILL the group also waits for the dead member's session timeout.
        for how in ("restart", "restart_after_sigkill"):
            await asyncio.sleep(2)  # the last answer's writes reach the copy
            if how == "restart":
                ns.workers[0].stop()
            else:
                ns.workers[0].kill()
            ns.workers.clear()
            ready_s = await ns.start()
            started = time.perf_counter()
            [first_ms] = await timed_round(ns, one_per_session(1, TEXTS[0], how), None)
            answered_s = ready_s + (time.perf_counter() - started)
            log = ns.workers[0].log()
            m = REBUILT.search(log)
            emit(metric=f"{how}_until_answer_s", value=round(answered_s, 1), sessions=sessions,
                 ready_s=round(ready_s, 1), first_answer_ms=round(first_ms, 1), target_s=5,
                 loaded_from_local_copy=sum(int(n) for n in LOADED.findall(log)),
                 keys_after_rebuild=int(m.group(1)) if m else None,
                 rebuild_s=between(log, rf"Joined group '{ns.settings.app_id}'", r"Recovery\]: Worker ready"),
                 session_timeout_s=ns.settings.session_timeout_s,
                 store="memory + local copy of the changelog (streams/state/snapshot.py)")
        rss = rss_mb(ns.workers[0])
        emit(metric="worker_rss_mb", value=round(rss), sessions=sessions, empty_rss_mb=round(empty_rss), target_mb=500)
        tput = await ns.throughput(n, 500)
        emit(metric="throughput_with_sessions_over_empty", value=round(tput / empty_tput, 3),
             sessions=sessions, with_sessions_req_per_s=round(tput, 1),
             empty_req_per_s=round(empty_tput, 1), target=0.9)
    finally:
        ns.stop()


async def main(only: str | None, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    if only in (None, "fanout"):
        await fanout(tmp, args.fanout_sessions, args.llm_ms)
    if only in (None, "latency"):
        await latency(tmp, args.latency_seconds)
    if only in (None, "workers"):
        await workers(tmp, args.requests, 500)
    if only in (None, "restart"):
        await restart(tmp, args.restart_sessions, args.requests)
    if only in (None, "rebuild"):
        await rebuild(tmp, args.rebuild_records)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["fanout", "latency", "workers", "restart", "rebuild"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--fanout-sessions", type=int, default=1000)
    parser.add_argument("--llm-ms", type=int, default=2000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--restart-sessions", type=int, default=100_000)
    parser.add_argument("--rebuild-records", type=int, default=1_000_000)
    return parser


if __name__ == "__main__":
    a = parser().parse_args()
    asyncio.run(main(a.only, a))
